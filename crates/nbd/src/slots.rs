//! The connection table of one server: at most `max` connections (one
//! thread each), every one with an activity clock, and room made for a new
//! client at the limit by closing the connection that has been idle longest.
//!
//! ```text
//! admit(peer) ── fewer than max ──> slot
//!      │
//!      └─ full: pick a victim among the idle connections (not running a
//!         command): still negotiating before serving, then longest idle
//!         first ── none (all busy) ──> Full (the caller closes the newcomer)
//!               └─ shut its socket down (its thread wakes and ends), wait
//!                  for the slot (≤ 5 s) ──> slot  (or Full if it hangs)
//! ```
//!
//! So idle connections, whoever holds them, never lock a real client out,
//! and the number of connection threads never exceeds `max`. A connection
//! that finished negotiating is only closed when nothing in negotiation is
//! left to close: a peer that cannot get through TLS and the handshake
//! cannot push out a client that did.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `idle_since` of a connection running a command.
const BUSY: u64 = u64::MAX;

/// How long `admit` waits for an evicted connection's thread to end.
const EVICT_WAIT: Duration = Duration::from_secs(5);

/// What one connection tells the table about itself.
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` when the connection last went idle, or
    /// [`BUSY`].
    idle_since: AtomicU64,
    /// Negotiation is over: the connection serves an export.
    serving: AtomicBool,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            epoch,
            idle_since: AtomicU64::new(0),
            serving: AtomicBool::new(false),
        };
        a.idle();
        a
    }

    /// A connection not in any table (served by `serve_connection`).
    pub(crate) fn standalone() -> Arc<Activity> {
        Arc::new(Activity::new(Instant::now()))
    }

    /// Running a command: not to be evicted.
    pub(crate) fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    /// Done with a command (its reply may still be on its way out).
    pub(crate) fn idle(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(BUSY - 1);
        self.idle_since.store(ms, Ordering::Relaxed);
    }

    /// Negotiation is over.
    pub(crate) fn serving(&self) {
        self.serving.store(true, Ordering::Relaxed);
    }

    /// How long the connection has been idle, `None` when busy.
    fn idle_for(&self) -> Option<Duration> {
        let since = self.idle_since.load(Ordering::Relaxed);
        (since != BUSY).then(|| {
            let now = self.epoch.elapsed().as_millis();
            Duration::from_millis(u64::try_from(now.saturating_sub(u128::from(since))).unwrap_or(0))
        })
    }
}

struct Entry {
    id: u64,
    peer: SocketAddr,
    /// A handle on the connection's socket, to shut it down.
    sock: TcpStream,
    activity: Arc<Activity>,
}

/// The connection that was closed to make room.
#[derive(Debug, Clone)]
pub(crate) struct Evicted {
    pub(crate) peer: SocketAddr,
    pub(crate) idle: Duration,
    pub(crate) serving: bool,
}

pub(crate) enum Admission {
    /// Room was free (or made: `evicted`).
    Admitted {
        slot: Slot,
        evicted: Option<Evicted>,
    },
    /// Every connection is running a command, or an evicted one would not
    /// end: the newcomer must be turned away.
    Full,
}

pub(crate) struct Slots {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    entries: Mutex<Vec<Entry>>,
    freed: Condvar,
}

/// A connection's place in the table, given back when dropped (at the end
/// of its thread).
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    activity: Arc<Activity>,
}

impl Slot {
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().retain(|e| e.id != self.id);
        self.slots.freed.notify_all();
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(Vec::new()),
            freed: Condvar::new(),
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections in the table now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Finds room for a connection from `peer` on `sock`.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr, sock: &TcpStream) -> Admission {
        let Ok(handle) = sock.try_clone() else {
            return Admission::Full;
        };
        let mut entries = self.lock();
        let mut evicted = None;
        if entries.len() >= self.max {
            // Negotiating before serving, then the longest idle.
            let victim = entries
                .iter()
                .filter_map(|e| {
                    let idle = e.activity.idle_for()?;
                    Some((e.activity.serving.load(Ordering::Relaxed), idle, e))
                })
                .min_by_key(|(serving, idle, _)| (*serving, std::cmp::Reverse(*idle)));
            let Some((serving, idle, victim)) = victim else {
                return Admission::Full;
            };
            let _ = victim.sock.shutdown(Shutdown::Both);
            evicted = Some(Evicted {
                peer: victim.peer,
                idle,
                serving,
            });
            let (guard, _) = self
                .freed
                .wait_timeout_while(entries, EVICT_WAIT, |e| e.len() >= self.max)
                .unwrap_or_else(|e| e.into_inner());
            entries = guard;
            if entries.len() >= self.max {
                return Admission::Full;
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        entries.push(Entry {
            id,
            peer,
            sock: handle,
            activity: activity.clone(),
        });
        Admission::Admitted {
            slot: Slot {
                slots: self.clone(),
                id,
                activity,
            },
            evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn the_table_evicts_negotiating_then_longest_idle_and_never_busy() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(2);
        let peer = l.local_addr().unwrap();
        let admit = |s: &TcpStream| match slots.admit(peer, s) {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Full => panic!("full"),
        };
        let (_c1, s1) = pair(&l);
        let (_c2, s2) = pair(&l);
        let (a, none) = admit(&s1);
        assert!(none.is_none());
        let (b, _) = admit(&s2);
        a.activity().serving();
        std::thread::sleep(Duration::from_millis(20));
        b.activity().idle();

        // Full: `a` has been idle longer, but `b` is still negotiating.
        let (_c3, s3) = pair(&l);
        let freer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(b);
        });
        let (c, evicted) = admit(&s3);
        freer.join().unwrap();
        let evicted = evicted.expect("someone evicted");
        assert!(!evicted.serving, "the negotiating one goes first");
        assert_eq!(slots.len(), 2);

        // Both busy: nobody can be evicted.
        a.activity().busy();
        c.activity().busy();
        let (_c4, s4) = pair(&l);
        assert!(matches!(slots.admit(peer, &s4), Admission::Full));
        drop(a);
        assert_eq!(slots.len(), 1);
        let (_d, evicted) = admit(&s4);
        assert!(evicted.is_none());
    }
}
