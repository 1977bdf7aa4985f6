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
//!             socket is writable (calls.rs)
//! every second: close connections idle for idle_timeout
//! ```
//!
//! A worker that answered a connection's only call may follow it for a
//! moment, reading its next call itself (calls.rs); the connection's
//! input is then out of the epoll set and this thread leaves it alone.
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

use super::calls::{dispatch, Calls, HANDOFF, READ_BUDGET, SCRATCH};
use super::conn::{receive, NoWait, Received, Shared};
use super::pool::Pool;
use crate::access::AllowList;
use crate::backend::NfsBackend;
use crate::log::ServiceLog;
use crate::rpc::Dispatcher;
use rustix::event::{epoll, Timespec};
use rustix::fd::OwnedFd;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls of one connection read and not yet answered in full, at most.
pub(crate) const MAX_IN_FLIGHT: usize = 16;
/// How long the reactor waits for events before looking at the clock.
const TICK: Duration = Duration::from_millis(200);
/// How often idle connections are looked for.
const SWEEP: Duration = Duration::from_secs(1);
/// How long accepting pauses after a failure (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
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

/// The reactor thread's state.
pub(crate) struct Reactor {
    epoll: Arc<OwnedFd>,
    listeners: Vec<TcpListener>,
    accept_paused: Vec<Option<Instant>>,
    conns: HashMap<u64, Arc<Shared>>,
    next_id: u64,
    waker: Arc<Waker>,
    pool: Pool,
    calls: Arc<Calls>,
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
        workers: usize,
        dispatcher: Arc<Dispatcher>,
        log: Arc<ServiceLog>,
        gate: Arc<Gate>,
        limits: Limits,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Reactor> {
        let ep = Arc::new(epoll::create(epoll::CreateFlags::CLOEXEC)?);
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
        let calls = Arc::new(Calls::new(
            dispatcher,
            log.clone(),
            waker.clone(),
            ep.clone(),
            pool.handle(),
            workers,
        ));
        Ok(Reactor {
            epoll: ep,
            listeners,
            accept_paused: vec![None; n],
            conns: HashMap::new(),
            next_id: FIRST_CONN,
            waker,
            pool,
            calls,
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
        let flags = epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        let shared = Arc::new(Shared::new(
            id,
            sock,
            peer,
            self.limits.max_record,
            flags,
            self.epoch,
        ));
        if epoll::add(
            &*self.epoll,
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
        self.conns.insert(id, shared);
    }

    /// The connection with no call in flight that has been quiet longest:
    /// (id, peer, how long).
    fn longest_idle(&self) -> Option<(u64, SocketAddr, Duration)> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.conns
            .iter()
            .filter(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
            .map(|(id, c)| (*id, c.peer, c.last.load(Ordering::Relaxed)))
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
                    let peer = self.conns.get(&id).map(|c| c.peer);
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

    /// Reads what has arrived and dispatches whole records (unless a
    /// worker follows the connection). `Err(None)`: the client left
    /// cleanly; `Err(Some(why))`: close and log.
    fn read(&mut self, id: u64) -> Result<(), Option<String>> {
        let Some(sh) = self.conns.get(&id).cloned() else {
            return Ok(());
        };
        let mut budget = READ_BUDGET;
        while budget > 0 {
            if sh.in_flight.load(Ordering::SeqCst) >= MAX_IN_FLIGHT {
                return Ok(());
            }
            let got = {
                let mut input = sh.input();
                if input.follower {
                    return Ok(());
                }
                receive(&sh.sock, &mut input.reader, &mut self.scratch, budget)
            };
            match got {
                Received::Bytes(n, records) => {
                    budget = budget.saturating_sub(n);
                    sh.touch();
                    for rec in records {
                        dispatch(&sh, &self.calls, rec);
                    }
                }
                Received::Nothing => return Ok(()),
                Received::Gone(why) => return Err(why),
                Received::Broken(why) => {
                    ServiceLog::bump(&self.log.closed_bad_input);
                    return Err(Some(why));
                }
            }
        }
        Ok(())
    }

    /// Writes queued replies; false when the connection broke.
    fn flush(&mut self, id: u64) -> bool {
        let Some(sh) = self.conns.get(&id).cloned() else {
            return true;
        };
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
    /// room for calls and no worker follows it, output while replies wait.
    fn update(&mut self, id: u64) {
        let Some(sh) = self.conns.get(&id) else {
            return;
        };
        let mut input = sh.input();
        let mut want_in = !input.follower && sh.in_flight.load(Ordering::SeqCst) < MAX_IN_FLIGHT;
        if !want_in && !input.follower {
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
        sh.set_interest(&self.epoll, &mut input, flags);
    }

    /// A worker queued output, made room for calls or closed the
    /// connection. Level-triggered waiting picks up bytes that arrived
    /// while reading was paused.
    fn woken(&mut self, id: u64) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.out().closed {
            self.close(id);
            return;
        }
        self.update(id);
    }

    fn close(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        let _ = epoll::delete(&*self.epoll, &c.sock);
        {
            let mut o = c.out();
            o.closed = true;
            o.queue.clear();
        }
        let _ = c.sock.shutdown(Shutdown::Both);
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
            .filter(|(_, sh)| {
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
