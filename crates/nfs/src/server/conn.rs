//! One TCP connection as the reactor and the workers share it: the
//! socket, the replies waiting for it ([`Out`]), the record being read and
//! what the reactor waits for ([`Input`]), the calls in flight; and the
//! two ways of using the socket: [`NoWait`] (the reactor and a worker
//! following the connection, never blocking) and [`Until`] (a worker
//! writing a reply, blocking up to a deadline).
//!
//! Who reads the socket: the reactor, except while a worker follows the
//! connection ([`Input::follower`], see `calls.rs`); the follower takes
//! the connection's read interest out of the reactor's epoll set for that
//! time, and both read under the [`Input`] lock, so a record is never
//! split between two readers.

use crate::rpc::record::RecordReader;
use crate::rpc::Reply;
use rustix::event::epoll;
use rustix::fd::OwnedFd;
use rustix::net::{RecvFlags, SendFlags};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::reactor::Waker;

/// A fragment body with at least this much to come, of a record that has
/// received at least this much, is read straight into the record's buffer.
const DIRECT: usize = 16 << 10;

/// Replies waiting for the socket, with how much of the first is written.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) queue: VecDeque<(Reply, usize)>,
    pub(crate) closed: bool,
    /// A worker is writing a reply (without holding the lock): others
    /// queue behind it and the reactor leaves the socket alone.
    pub(crate) writing: bool,
}

/// The reading side: the record being assembled, who reads, and the
/// events the connection is registered for in the reactor's epoll set.
pub(crate) struct Input {
    pub(crate) reader: RecordReader,
    /// A worker follows the connection: it reads the next call itself and
    /// the reactor does not wait for input.
    pub(crate) follower: bool,
    /// The events registered in the epoll set.
    pub(crate) flags: epoll::EventFlags,
}

/// The part of a connection the workers share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) sock: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) out: Mutex<Out>,
    pub(crate) input: Mutex<Input>,
    pub(crate) in_flight: AtomicUsize,
    /// Set while the reactor does not read (MAX_IN_FLIGHT reached).
    pub(crate) paused: AtomicBool,
    /// Milliseconds after `epoch` of the last bytes in or out.
    pub(crate) last: AtomicU64,
    pub(crate) epoch: Instant,
}

impl Shared {
    pub(crate) fn new(
        id: u64,
        sock: TcpStream,
        peer: SocketAddr,
        max_record: usize,
        flags: epoll::EventFlags,
        epoch: Instant,
    ) -> Shared {
        let s = Shared {
            id,
            sock,
            peer,
            out: Mutex::default(),
            input: Mutex::new(Input {
                reader: RecordReader::new(max_record),
                follower: false,
                flags,
            }),
            in_flight: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            last: AtomicU64::new(0),
            epoch,
        };
        s.touch();
        s
    }

    pub(crate) fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn out(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn input(&self) -> MutexGuard<'_, Input> {
        self.input.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `flags` for the connection in `epoll` (with the
    /// [`Input`] lock held), unless they are registered already.
    pub(crate) fn set_interest(
        &self,
        epoll: &OwnedFd,
        input: &mut Input,
        flags: epoll::EventFlags,
    ) {
        if flags != input.flags
            && epoll::modify(epoll, &self.sock, epoll::EventData::new_u64(self.id), flags).is_ok()
        {
            input.flags = flags;
        }
    }

    /// One call is answered (or dropped); wakes the reactor if it stopped
    /// reading for want of room.
    pub(crate) fn finished(&self, waker: &Waker) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.paused.swap(false, Ordering::SeqCst) {
            waker.wake(self.id);
        }
    }

    /// Marks the connection closed and shuts the socket (the reactor sees
    /// it and forgets the connection).
    pub(crate) fn shut(&self, waker: &Waker) {
        self.out().closed = true;
        let _ = self.sock.shutdown(Shutdown::Both);
        waker.wake(self.id);
    }
}

/// What one read of a connection gave.
pub(crate) enum Received {
    /// Bytes arrived (how many), completing these records.
    Bytes(usize, Vec<Vec<u8>>),
    /// Nothing to read now.
    Nothing,
    /// The client left: `None` cleanly, `Some(why)` in the middle of a
    /// record or with a broken socket (close and log).
    Gone(Option<String>),
    /// A record broke the framing (too long): close and log.
    Broken(String),
}

/// Reads what has arrived on `sock` (one non-blocking read, at most
/// `budget` bytes when straight into a record) into `reader`: through
/// `scratch` for headers and small bodies, straight into the record once
/// a large body is flowing, with room no larger than what already came
/// (memory follows the bytes received, not what a header announced).
pub(crate) fn receive(
    sock: &TcpStream,
    reader: &mut RecordReader,
    scratch: &mut [u8],
    budget: usize,
) -> Received {
    let direct = reader.body_left().min(reader.received());
    let mut records = Vec::new();
    let got = if direct >= DIRECT {
        let room = reader.room(direct.min(budget));
        let got = NoWait(sock).read(room);
        records.extend(reader.filled(*got.as_ref().unwrap_or(&0)));
        got
    } else {
        match NoWait(sock).read(scratch) {
            Ok(n) => {
                let mut at = 0;
                while at < n {
                    match reader.feed(&scratch[at..n]) {
                        Ok((used, rec)) => {
                            at += used;
                            records.extend(rec);
                        }
                        Err(e) => return Received::Broken(e.to_string()),
                    }
                }
                Ok(n)
            }
            Err(e) => Err(e),
        }
    };
    match got {
        Ok(0) => Received::Gone(
            (!reader.is_idle()).then(|| "the client left in the middle of a record".into()),
        ),
        Ok(n) => Received::Bytes(n, records),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Received::Nothing
        }
        Err(e) => Received::Gone(Some(e.to_string())),
    }
}

/// A worker's view of a connection socket: blocking writes (each for at
/// most the socket's send timeout without progress) until a deadline,
/// then WouldBlock.
pub(crate) struct Until<'a>(pub(crate) &'a TcpStream, pub(crate) Instant);

impl Write for Until<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if Instant::now() >= self.1 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(rustix::net::sendmsg(
            self.0,
            bufs,
            &mut rustix::net::SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A non-blocking view of a (blocking) connection socket: reads and
/// writes that never block (MSG_DONTWAIT), and never raise SIGPIPE.
pub(crate) struct NoWait<'a>(pub(crate) &'a TcpStream);

impl Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(self.0, buf, RecvFlags::DONTWAIT)?.0)
    }
}

impl Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(
            self.0,
            buf,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        )?)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        Ok(rustix::net::sendmsg(
            self.0,
            bufs,
            &mut rustix::net::SendAncillaryBuffer::default(),
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        )?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
