//! The TCP side of the service: one thread waits (epoll) on every listener
//! and every connection, reads RPC records as their bytes arrive, hands
//! whole records to the worker [`Pool`] and writes replies a socket could
//! not take at once. An idle connection costs no thread and no buffer.
//!
//! ```text
//! accept ── peer on no allow list (Gate)? ── close, nothing read
//!        ── max_connections open?         ── close the longest-idle one
//!                                            (none idle: the new one), log line
//!        └─ register (non-blocking, TCP_NODELAY)
//! readable ── RecordReader (bytes that arrived, ≤ max_record)
//!          └─ whole record ── Pool: Dispatcher::handle ── reply written by
//!             the worker while the client takes it; what the client has
//!             not taken after HANDOFF (100 ms) without progress or
//!             WORKER_BUDGET (1 s) is queued and written here when the
//!             socket is writable
//! every second: close connections idle for idle_timeout
//! ```
//!
//! A connection's calls run concurrently on the pool and their replies go
//! out as they finish (RPC matches replies by xid). At most
//! [`MAX_IN_FLIGHT`] calls of one connection are read and not yet answered
//! in full: past that the reactor stops reading it until replies have gone
//! out, so a client that sends without reading its replies holds at most
//! that many replies, and memory per connection is bounded by
//! `(MAX_IN_FLIGHT + 1) × max_record` plus the read cache views its READ
//! replies share. A record that breaks the framing (too long, not a call)
//! closes its connection and is logged; so does a client leaving in the
//! middle of a record.

use super::pool::Pool;
use crate::access::AllowList;
use crate::backend::NfsBackend;
use crate::log::ServiceLog;
use crate::rpc::msg::CallError;
use crate::rpc::record::{begin_record, finish_record, RecordReader};
use crate::rpc::{Dispatcher, Reply};
use rustix::event::{epoll, Timespec};
use rustix::fd::OwnedFd;
use rustix::net::{RecvFlags, SendFlags};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls of one connection read and not yet answered in full, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// The send timeout of connections: how long a worker waits for a client
/// that takes none of its reply before it leaves the rest to the reactor.
const HANDOFF: Duration = Duration::from_millis(100);
/// How long a worker spends writing one reply at most.
const WORKER_BUDGET: Duration = Duration::from_secs(1);
/// How long the reactor waits for events before looking at the clock.
const TICK: Duration = Duration::from_millis(200);
/// How often idle connections are looked for.
const SWEEP: Duration = Duration::from_secs(1);
/// How long accepting pauses after a failure (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The shared buffer small reads go through.
const SCRATCH: usize = 64 << 10;
/// A fragment body with at least this much to come, of a record that has
/// received at least this much, is read straight into the record's buffer.
const DIRECT: usize = 16 << 10;
/// Bytes read from one connection per readiness event (fairness).
const READ_BUDGET: usize = 2 << 20;
/// Event token of the waker; listeners are 1..=n; connections above.
const WAKER: u64 = 0;
const FIRST_CONN: u64 = 1 << 16;

/// Which peers may connect at all: on the service's allow list, and let in
/// by the backend ([`NfsBackend::admits`]: a session's own list).
pub(crate) struct Gate {
    pub(crate) allow: Arc<AllowList>,
    pub(crate) backend: Arc<dyn NfsBackend>,
}

impl Gate {
    pub(crate) fn admits(&self, peer: IpAddr) -> bool {
        self.allow.allows(peer) && self.backend.admits(peer)
    }
}

/// Limits of the TCP side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_record: usize,
}

/// A log line at most once a second; the others are counted into the next.
#[derive(Default)]
pub(crate) struct Note {
    last: Option<Instant>,
    suppressed: u64,
}

impl Note {
    pub(crate) fn line(&mut self, log: &ServiceLog, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut self.suppressed);
        let mut msg = msg();
        if more > 0 {
            msg.push_str(&format!(" (and {more} more like it in the last second)"));
        }
        log.line(msg);
        self.last = Some(now);
    }
}

/// Lets workers (and the service handle) wake the reactor about a
/// connection: output queued, room for more calls, closed.
pub(crate) struct Waker {
    fd: OwnedFd,
    ids: Mutex<Vec<u64>>,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Waker {
            fd,
            ids: Mutex::default(),
        })
    }

    pub(crate) fn wake(&self, id: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    fn take(&self) -> Vec<u64> {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Replies waiting for the socket, with how much of the first is written.
#[derive(Default)]
struct Out {
    queue: VecDeque<(Reply, usize)>,
    closed: bool,
    /// A worker is writing a reply (without holding the lock): others
    /// queue behind it and the reactor leaves the socket alone.
    writing: bool,
}

/// The part of a connection the workers share.
struct Shared {
    id: u64,
    sock: TcpStream,
    peer: SocketAddr,
    out: Mutex<Out>,
    in_flight: AtomicUsize,
    /// Set while the reactor does not read (MAX_IN_FLIGHT reached).
    paused: AtomicBool,
    /// Milliseconds after `epoch` of the last bytes in or out.
    last: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn out(&self) -> std::sync::MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One call is answered (or dropped); wakes the reactor if it stopped
    /// reading for want of room.
    fn finished(&self, waker: &Waker) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.paused.swap(false, Ordering::SeqCst) {
            waker.wake(self.id);
        }
    }

    /// Marks the connection closed and shuts the socket (the reactor sees
    /// it and forgets the connection).
    fn shut(&self, waker: &Waker) {
        self.out().closed = true;
        let _ = self.sock.shutdown(Shutdown::Both);
        waker.wake(self.id);
    }
}

/// Runs one call on a worker and sends its reply.
fn serve_call(sh: &Shared, d: &Dispatcher, log: &ServiceLog, waker: &Waker, msg: Vec<u8>) {
    let mut out = Reply::new();
    let start = begin_record(&mut out);
    if let Err(e @ CallError::NotACall(_)) = d.handle(&msg, sh.peer.ip(), &mut out) {
        ServiceLog::bump(&log.closed_bad_input);
        log.line(format!("rpc: connection from {} closed: {e}", sh.peer));
        sh.shut(waker);
        sh.finished(waker);
        return;
    }
    drop(msg);
    finish_record(&mut out, start);
    {
        let mut o = sh.out();
        if o.closed {
            drop(o);
            sh.finished(waker);
            return;
        }
        if o.writing || !o.queue.is_empty() {
            // Earlier replies are going out: this one goes after them.
            o.queue.push_back((out, 0));
            return;
        }
        o.writing = true;
    }
    // Write it here while the client takes it (the socket is blocking):
    // a READ reply of 1 MiB rarely fits the socket at once. A client that
    // takes nothing for HANDOFF, or has not taken it all after
    // WORKER_BUDGET, gets the rest from the reactor, so a slow client
    // holds a worker for at most that long.
    let mut w = Until(&sh.sock, Instant::now() + WORKER_BUDGET);
    let result = match out.write_from(&mut w, 0) {
        Ok(n) if n == out.total_len() => Ok((true, n)),
        Ok(n) => Ok((false, n)),
        Err(e) => Err(e),
    };
    sh.touch();
    let mut o = sh.out();
    o.writing = false;
    match result {
        Ok((true, _)) => {
            let more = !o.queue.is_empty();
            drop(o);
            if more {
                waker.wake(sh.id);
            }
            sh.finished(waker);
        }
        Ok((false, at)) => {
            // The reactor writes the rest when the socket takes it.
            o.queue.push_front((out, at));
            drop(o);
            waker.wake(sh.id);
        }
        Err(_) => {
            drop(o);
            sh.shut(waker);
            sh.finished(waker);
        }
    }
}

/// A worker's view of a connection socket: blocking writes (each for at
/// most HANDOFF without progress) until a deadline, then WouldBlock.
struct Until<'a>(&'a TcpStream, Instant);

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

/// The reactor's view of a (blocking) connection socket: reads and
/// writes that never block (MSG_DONTWAIT), and never raise SIGPIPE.
struct NoWait<'a>(&'a TcpStream);

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

/// A connection as the reactor holds it.
struct Conn {
    shared: Arc<Shared>,
    reader: RecordReader,
    flags: epoll::EventFlags,
}

/// The reactor thread's state.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    listeners: Vec<TcpListener>,
    accept_paused: Vec<Option<Instant>>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    waker: Arc<Waker>,
    pool: Pool,
    dispatcher: Arc<Dispatcher>,
    log: Arc<ServiceLog>,
    gate: Arc<Gate>,
    limits: Limits,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    scratch: Vec<u8>,
    last_sweep: Instant,
    refused_note: Note,
    limit_note: Note,
    accept_note: Note,
}

impl Reactor {
    /// Registers the (already bound) listeners.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        listeners: Vec<TcpListener>,
        waker: Arc<Waker>,
        pool: Pool,
        dispatcher: Arc<Dispatcher>,
        log: Arc<ServiceLog>,
        gate: Arc<Gate>,
        limits: Limits,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Reactor> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &ep,
            &waker.fd,
            epoll::EventData::new_u64(WAKER),
            epoll::EventFlags::IN,
        )?;
        for (i, l) in listeners.iter().enumerate() {
            l.set_nonblocking(true)?;
            epoll::add(
                &ep,
                l,
                epoll::EventData::new_u64(i as u64 + 1),
                epoll::EventFlags::IN,
            )?;
        }
        let n = listeners.len();
        Ok(Reactor {
            epoll: ep,
            listeners,
            accept_paused: vec![None; n],
            conns: HashMap::new(),
            next_id: FIRST_CONN,
            waker,
            pool,
            dispatcher,
            log,
            gate,
            limits,
            stop,
            epoch: Instant::now(),
            scratch: vec![0; SCRATCH],
            last_sweep: Instant::now(),
            refused_note: Note::default(),
            limit_note: Note::default(),
            accept_note: Note::default(),
        })
    }

    /// Serves until the stop flag is set; then closes every connection and
    /// lets the workers finish.
    pub(crate) fn run(mut self) {
        let mut events = Vec::with_capacity(256);
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as _,
        };
        while !self.stop.load(Ordering::SeqCst) {
            events.clear();
            if let Err(e) = epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&tick),
            ) {
                if e != rustix::io::Errno::INTR {
                    self.log
                        .line(format!("rpc: waiting for events failed: {e}"));
                    std::thread::sleep(TICK);
                }
                continue;
            }
            let ready: Vec<(u64, epoll::EventFlags)> = events
                .iter()
                .map(|ev| {
                    let (flags, data) = (ev.flags, ev.data);
                    (data.u64(), flags)
                })
                .collect();
            for (token, flags) in ready {
                if token == WAKER {
                    for id in self.waker.take() {
                        self.woken(id);
                    }
                } else if token < FIRST_CONN {
                    self.accept(token as usize - 1);
                } else {
                    self.ready(token, flags);
                }
            }
            self.resume_accepting();
            if self.last_sweep.elapsed() >= SWEEP {
                self.sweep();
            }
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
        self.pool.stop();
    }

    fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            match l.accept() {
                Ok((sock, peer)) => self.admit(sock, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of file descriptors, most likely: stop accepting
                    // for a moment instead of spinning on the listener.
                    let addr = l.local_addr().ok();
                    let _ = epoll::modify(
                        &self.epoll,
                        l,
                        epoll::EventData::new_u64(i as u64 + 1),
                        epoll::EventFlags::empty(),
                    );
                    self.accept_paused[i] = Some(Instant::now() + ACCEPT_PAUSE);
                    self.accept_note.line(&self.log, || {
                        format!("rpc: accepting on {addr:?} failed: {e} (pausing {ACCEPT_PAUSE:?})")
                    });
                    return;
                }
            }
        }
    }

    fn resume_accepting(&mut self) {
        let now = Instant::now();
        for (i, l) in self.listeners.iter().enumerate() {
            if self.accept_paused[i].is_some_and(|t| t <= now) {
                self.accept_paused[i] = None;
                let _ = epoll::modify(
                    &self.epoll,
                    l,
                    epoll::EventData::new_u64(i as u64 + 1),
                    epoll::EventFlags::IN,
                );
            }
        }
    }

    fn admit(&mut self, sock: TcpStream, peer: SocketAddr) {
        if !self.gate.admits(peer.ip()) {
            ServiceLog::bump(&self.log.refused_peers);
            self.refused_note.line(&self.log, || {
                format!("rpc: refused connection from {peer}: not on the allow list")
            });
            return;
        }
        let max = self.limits.max_connections;
        if self.conns.len() >= max {
            ServiceLog::bump(&self.log.over_limit);
            match self.longest_idle() {
                Some((id, old, idle)) => {
                    self.limit_note.line(&self.log, || {
                        format!(
                            "rpc: connection limit reached ({max} open): closed the connection from {old}, idle for {idle:?}, to admit {peer} (raise it with --nfs-max-connections)"
                        )
                    });
                    self.close(id);
                }
                None => {
                    self.limit_note.line(&self.log, || {
                        format!(
                            "rpc: connection limit reached ({max} open, all busy): closed the new connection from {peer} (raise it with --nfs-max-connections)"
                        )
                    });
                    return;
                }
            }
        }
        // Blocking, so that workers write replies with plain sends; the
        // reactor reads and writes with MSG_DONTWAIT (NoWait) and never
        // blocks.
        if sock.set_write_timeout(Some(HANDOFF)).is_err() {
            return;
        }
        let _ = sock.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        let shared = Arc::new(Shared {
            id,
            sock,
            peer,
            out: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            last: AtomicU64::new(0),
            epoch: self.epoch,
        });
        shared.touch();
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        if epoll::add(
            &self.epoll,
            &shared.sock,
            epoll::EventData::new_u64(id),
            flags,
        )
        .is_err()
        {
            return;
        }
        ServiceLog::bump(&self.log.accepted);
        ServiceLog::bump(&self.log.active);
        self.conns.insert(
            id,
            Conn {
                shared,
                reader: RecordReader::new(self.limits.max_record),
                flags,
            },
        );
    }

    /// The connection with no call in flight that has been quiet longest:
    /// (id, peer, how long).
    fn longest_idle(&self) -> Option<(u64, SocketAddr, Duration)> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.conns
            .iter()
            .filter(|(_, c)| c.shared.in_flight.load(Ordering::SeqCst) == 0)
            .map(|(id, c)| (*id, c.shared.peer, c.shared.last.load(Ordering::Relaxed)))
            .min_by_key(|(_, _, last)| *last)
            .map(|(id, peer, last)| (id, peer, Duration::from_millis(now.saturating_sub(last))))
    }

    fn ready(&mut self, id: u64, flags: epoll::EventFlags) {
        if flags.intersects(epoll::EventFlags::ERR | epoll::EventFlags::HUP) {
            self.close(id);
            return;
        }
        if flags.contains(epoll::EventFlags::OUT) && !self.flush(id) {
            self.close(id);
            return;
        }
        if flags.intersects(epoll::EventFlags::IN | epoll::EventFlags::RDHUP) {
            if let Err(why) = self.read(id) {
                if let Some(why) = why {
                    let peer = self.conns.get(&id).map(|c| c.shared.peer);
                    if let Some(peer) = peer {
                        self.log
                            .line(format!("rpc: connection from {peer} closed: {why}"));
                    }
                }
                self.close(id);
                return;
            }
        }
        self.update(id);
    }

    /// Reads what has arrived and dispatches whole records. `Err(None)`:
    /// the client left cleanly; `Err(Some(why))`: close and log.
    fn read(&mut self, id: u64) -> Result<(), Option<String>> {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(c) = self.conns.get_mut(&id) else {
                return Ok(());
            };
            if c.shared.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
                return Ok(());
            }
            // Straight into the record once a large body is flowing, with
            // room no larger than what already came (memory follows the
            // bytes received, not what a header announced).
            let direct = c.reader.body_left().min(c.reader.received());
            let mut records = Vec::new();
            let n = if direct >= DIRECT {
                let room = c.reader.room(direct.min(READ_BUDGET));
                let got = NoWait(&c.shared.sock).read(room);
                records.extend(c.reader.filled(*got.as_ref().unwrap_or(&0)));
                got
            } else {
                match NoWait(&c.shared.sock).read(&mut self.scratch) {
                    Ok(n) => {
                        let mut at = 0;
                        while at < n {
                            match c.reader.feed(&self.scratch[at..n]) {
                                Ok((used, rec)) => {
                                    at += used;
                                    records.extend(rec);
                                }
                                Err(e) => {
                                    ServiceLog::bump(&self.log.closed_bad_input);
                                    return Err(Some(e.to_string()));
                                }
                            }
                        }
                        Ok(n)
                    }
                    Err(e) => Err(e),
                }
            };
            match n {
                Ok(0) => {
                    let clean = c.reader.is_idle();
                    return Err(
                        (!clean).then(|| "the client left in the middle of a record".into())
                    );
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    c.shared.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Some(e.to_string())),
            }
            let shared = c.shared.clone();
            for rec in records {
                self.dispatch(&shared, rec);
            }
        }
        Ok(())
    }

    fn dispatch(&self, sh: &Arc<Shared>, rec: Vec<u8>) {
        sh.in_flight.fetch_add(1, Ordering::SeqCst);
        let (sh, d, log, waker) = (
            sh.clone(),
            self.dispatcher.clone(),
            self.log.clone(),
            self.waker.clone(),
        );
        self.pool
            .submit(Box::new(move || serve_call(&sh, &d, &log, &waker, rec)));
    }

    /// Writes queued replies; false when the connection broke.
    fn flush(&mut self, id: u64) -> bool {
        let Some(c) = self.conns.get(&id) else {
            return true;
        };
        let sh = c.shared.clone();
        let mut done = 0;
        let mut ok = true;
        {
            let mut o = sh.out();
            if o.writing {
                // A worker has the socket; it wakes us when done.
                return true;
            }
            while let Some((rep, at)) = o.queue.front_mut() {
                match rep.write_from(&mut NoWait(&sh.sock), *at) {
                    Ok(n) if n == rep.total_len() => {
                        o.queue.pop_front();
                        done += 1;
                    }
                    Ok(n) => {
                        *at = n;
                        break;
                    }
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
        }
        if done > 0 {
            sh.touch();
            sh.in_flight.fetch_sub(done, Ordering::SeqCst);
        }
        ok
    }

    /// Sets what the reactor waits for on a connection: input while it has
    /// room for calls, output while replies wait.
    fn update(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let sh = &c.shared;
        let mut want_in = sh.in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT;
        if !want_in {
            sh.paused.store(true, Ordering::SeqCst);
            if sh.in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT {
                sh.paused.store(false, Ordering::SeqCst);
                want_in = true;
            }
        }
        let want_out = {
            let o = sh.out();
            !o.writing && !o.queue.is_empty()
        };
        let mut flags = epoll::EventFlags::empty();
        if want_in {
            flags |= epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        }
        if want_out {
            flags |= epoll::EventFlags::OUT;
        }
        if flags != c.flags
            && epoll::modify(&self.epoll, &sh.sock, epoll::EventData::new_u64(id), flags).is_ok()
        {
            c.flags = flags;
        }
    }

    /// A worker queued output, made room for calls or closed the
    /// connection. Level-triggered waiting picks up bytes that arrived
    /// while reading was paused.
    fn woken(&mut self, id: u64) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.shared.out().closed {
            self.close(id);
            return;
        }
        self.update(id);
    }

    fn close(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &c.shared.sock);
        {
            let mut o = c.shared.out();
            o.closed = true;
            o.queue.clear();
        }
        let _ = c.shared.sock.shutdown(Shutdown::Both);
        self.log.active.fetch_sub(1, Ordering::Relaxed);
    }

    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let Some(timeout) = self.limits.idle_timeout else {
            return;
        };
        let now = self.epoch.elapsed().as_millis() as u64;
        let limit = timeout.as_millis() as u64;
        let idle: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let sh = &c.shared;
                let quiet = now.saturating_sub(sh.last.load(Ordering::Relaxed)) > limit;
                // A call still running is not idleness; a reply the
                // client does not take is.
                quiet && (sh.in_flight.load(Ordering::SeqCst) == 0 || !sh.out().queue.is_empty())
            })
            .map(|(id, _)| *id)
            .collect();
        if idle.is_empty() {
            return;
        }
        self.log
            .idle_closed
            .fetch_add(idle.len() as u64, Ordering::Relaxed);
        for id in &idle {
            self.close(*id);
        }
        self.log.line(format!(
            "rpc: closed {} connection(s) idle for more than {timeout:?} (--nfs-idle-timeout)",
            idle.len(),
        ));
    }
}
