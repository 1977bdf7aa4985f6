//! Running calls on the workers: [`serve_call`] answers one call, writes
//! its reply while the client takes it (and the replies that queued
//! behind it), then may follow the connection.
//!
//! ```text
//! reactor ── whole record ── Pool ── serve_call: Dispatcher::handle, write reply
//!                                      (and every reply queued behind it)
//!   nothing else in flight on the connection, nothing queued in the pool,
//!   fewer than workers/2 followers?
//!     └─ follow: the connection's input leaves the reactor's epoll set;
//!        wait up to FOLLOW for the next call, read it, answer it, again;
//!        two calls at once, none for FOLLOW, work queued in the pool:
//!        input goes back to the reactor
//! ```
//!
//! A client that sends one call at a time (libnfs's `nfs-cat`, `qemu-img`
//! over libnfs) is then served by the thread its data wakes, as a thread
//! per connection would serve it, instead of waking the reactor and then
//! a worker for every call; a client that keeps several calls in flight
//! is served by the reactor and the pool as before. Following is bounded:
//! at most half the workers follow, and only while no call waits for a
//! worker.

use super::conn::{receive, Received, Shared, Until};
use super::pool::PoolHandle;
use super::reactor::Waker;
use crate::log::ServiceLog;
use crate::rpc::msg::CallError;
use crate::rpc::record::{begin_record, finish_record};
use crate::rpc::{Dispatcher, Reply};
use rustix::event::{epoll, PollFd, PollFlags, Timespec};
use rustix::fd::OwnedFd;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The send timeout of connections: how long a worker waits for a client
/// that takes none of its reply before it leaves the rest to the reactor.
pub(crate) const HANDOFF: Duration = Duration::from_millis(100);
/// How long a worker spends writing replies at most, before it leaves
/// the rest to the reactor.
const WORKER_BUDGET: Duration = Duration::from_secs(1);
/// How long a following worker waits for the client's next call.
const FOLLOW: Duration = Duration::from_millis(1);
/// Bytes read at once, into the scratch buffer or straight into a record.
pub(crate) const SCRATCH: usize = 64 << 10;
/// Bytes read from one connection per readiness event (fairness).
pub(crate) const READ_BUDGET: usize = 2 << 20;

/// What every call's job shares.
pub(crate) struct Calls {
    pub(crate) dispatcher: Arc<Dispatcher>,
    pub(crate) log: Arc<ServiceLog>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) epoll: Arc<OwnedFd>,
    pub(crate) pool: PoolHandle,
    followers: AtomicUsize,
    max_followers: usize,
}

impl Calls {
    pub(crate) fn new(
        dispatcher: Arc<Dispatcher>,
        log: Arc<ServiceLog>,
        waker: Arc<Waker>,
        epoll: Arc<OwnedFd>,
        pool: PoolHandle,
        workers: usize,
    ) -> Calls {
        Calls {
            dispatcher,
            log,
            waker,
            epoll,
            pool,
            followers: AtomicUsize::new(0),
            max_followers: (workers / 2).max(1),
        }
    }
}

/// Queues one call of `sh` for the pool.
pub(crate) fn dispatch(sh: &Arc<Shared>, calls: &Arc<Calls>, rec: Vec<u8>) {
    sh.in_flight.fetch_add(1, Ordering::SeqCst);
    let (sh, c) = (sh.clone(), calls.clone());
    calls
        .pool
        .submit(Box::new(move || serve_call(&sh, &c, rec)));
}

/// Runs one call on a worker and sends its reply; then follows the
/// connection while the client sends one call at a time (module doc).
pub(crate) fn serve_call(sh: &Arc<Shared>, calls: &Arc<Calls>, msg: Vec<u8>) {
    if !answer(sh, calls, msg) || !quiet(sh, calls) {
        return;
    }
    let c = calls;
    if c.followers.fetch_add(1, Ordering::SeqCst) >= c.max_followers {
        c.followers.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let took = {
        let mut input = sh.input();
        let free = !input.follower && !sh.out().closed;
        if free {
            input.follower = true;
            let flags = input.flags - (epoll::EventFlags::IN | epoll::EventFlags::RDHUP);
            sh.set_interest(&c.epoll, &mut input, flags);
        }
        free
    };
    if took {
        loop {
            match next_call(sh, c) {
                Next::One(rec) => {
                    ServiceLog::bump(&c.log.followed);
                    sh.in_flight.fetch_add(1, Ordering::SeqCst);
                    if !answer(sh, c, rec) || !quiet(sh, c) {
                        break;
                    }
                }
                Next::Several(recs) => {
                    for rec in recs {
                        dispatch(sh, c, rec);
                    }
                    break;
                }
                Next::Idle => break,
                Next::Gone(why) => {
                    if let Some(why) = why {
                        c.log
                            .line(format!("rpc: connection from {} closed: {why}", sh.peer));
                    }
                    sh.shut(&c.waker);
                    break;
                }
            }
        }
        // Input goes back to the reactor (level-triggered: bytes that
        // came meanwhile are seen at once); it sorts out pausing and
        // output the next time it looks at the connection.
        let mut input = sh.input();
        input.follower = false;
        let flags = input.flags | epoll::EventFlags::IN | epoll::EventFlags::RDHUP;
        sh.set_interest(&c.epoll, &mut input, flags);
    }
    c.followers.fetch_sub(1, Ordering::SeqCst);
}

/// Nothing else in flight on the connection and no call waiting for a
/// worker: following costs nobody a thread.
fn quiet(sh: &Shared, c: &Calls) -> bool {
    sh.in_flight.load(Ordering::SeqCst) == 0 && c.pool.queued() == 0
}

/// Answers one call: true when its reply, and every reply queued behind
/// it, went out in full from this worker and the connection is open.
fn answer(sh: &Shared, c: &Calls, msg: Vec<u8>) -> bool {
    ServiceLog::bump(&c.log.calls);
    let mut out = Reply::new();
    let start = begin_record(&mut out);
    if let Err(e @ CallError::NotACall(_)) = c.dispatcher.handle(&msg, sh.peer.ip(), &mut out) {
        ServiceLog::bump(&c.log.closed_bad_input);
        c.log
            .line(format!("rpc: connection from {} closed: {e}", sh.peer));
        sh.shut(&c.waker);
        sh.finished(&c.waker);
        return false;
    }
    drop(msg);
    finish_record(&mut out, start);
    {
        let mut o = sh.out();
        if o.closed {
            drop(o);
            sh.finished(&c.waker);
            return false;
        }
        if o.writing || !o.queue.is_empty() {
            // Earlier replies are going out: this one goes after them.
            o.queue.push_back((out, 0));
            return false;
        }
        o.writing = true;
    }
    // Written here while the client takes it (the socket is blocking): a
    // READ reply of 1 MiB rarely fits the socket at once. A client that
    // takes nothing for HANDOFF, or has not taken everything after
    // WORKER_BUDGET, gets the rest from the reactor, so a slow client
    // holds a worker for at most that long.
    let deadline = Instant::now() + WORKER_BUDGET;
    let (mut reply, mut at) = (out, 0);
    loop {
        let result = reply.write_from(&mut Until(&sh.sock, deadline), at);
        sh.touch();
        let mut o = sh.out();
        match result {
            Ok(n) if n == reply.total_len() => {
                let next = if o.closed { None } else { o.queue.pop_front() };
                let open = !o.closed;
                if next.is_none() {
                    o.writing = false;
                }
                drop(o);
                sh.finished(&c.waker);
                match next {
                    Some((r, a)) => (reply, at) = (r, a),
                    None => return open,
                }
            }
            Ok(n) => {
                // The reactor writes the rest when the socket takes it.
                o.writing = false;
                o.queue.push_front((reply, n));
                drop(o);
                c.waker.wake(sh.id);
                return false;
            }
            Err(_) => {
                o.writing = false;
                drop(o);
                sh.shut(&c.waker);
                sh.finished(&c.waker);
                return false;
            }
        }
    }
}

/// What a following worker found.
enum Next {
    /// One whole call and nothing after it.
    One(Vec<u8>),
    /// Several calls at once: the client pipelines.
    Several(Vec<Vec<u8>>),
    /// No call within FOLLOW.
    Idle,
    /// The client left or broke the framing (why, to log).
    Gone(Option<String>),
}

thread_local! {
    static FOLLOW_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Waits up to FOLLOW (from the last bytes that came) for the next call
/// of a followed connection.
fn next_call(sh: &Shared, c: &Calls) -> Next {
    let mut deadline = Instant::now() + FOLLOW;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Next::Idle;
        }
        let wait = Timespec {
            tv_sec: 0,
            tv_nsec: left.as_nanos() as _,
        };
        match rustix::event::poll(&mut [PollFd::new(&sh.sock, PollFlags::IN)], Some(&wait)) {
            Ok(0) => return Next::Idle,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Next::Gone(Some(e.to_string())),
        }
        let got = FOLLOW_SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SCRATCH {
                s.resize(SCRATCH, 0);
            }
            receive(&sh.sock, &mut sh.input().reader, &mut s, READ_BUDGET)
        });
        match got {
            Received::Bytes(_, mut recs) => {
                sh.touch();
                deadline = Instant::now() + FOLLOW;
                match recs.len() {
                    0 => {}
                    1 => return Next::One(recs.pop().unwrap_or_default()),
                    _ => return Next::Several(recs),
                }
            }
            Received::Nothing => {}
            Received::Gone(why) => return Next::Gone(why),
            Received::Broken(why) => {
                ServiceLog::bump(&c.log.closed_bad_input);
                return Next::Gone(Some(why));
            }
        }
    }
}
