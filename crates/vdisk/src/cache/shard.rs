//! One shard of the block cache: a CLOCK cache (an approximation of LRU that
//! needs no list surgery on a hit) plus the blocks being fetched right now.
//!
//! Scan resistance: a block fetched for a sequential stream (a *scan*
//! block) takes a free slot while there is one; once the shard is full it
//! replaces the shard's most recent scan block instead of running the
//! CLOCK. A stream longer than the cache therefore churns one slot per
//! shard and leaves the rest of the cache alone, so a second pass over a
//! disk larger than the cache finds most of the cache's blocks still there
//! (plain CLOCK, like LRU, would have evicted each block just before the
//! pass came back to it, and hit nothing). Blocks that readers fetch
//! out of sequence run the ordinary CLOCK and may evict scan blocks.
//!
//! A block being fetched has a [`Flight`] in `inflight`; other readers of that
//! block wait on its condition variable instead of reading the lower disk
//! again. Lock order: a shard's mutex may be held while taking a flight's
//! mutex, never the reverse.

use super::budget::CacheBudget;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// The bytes of one cached block (the last block of a disk may be short).
pub type Block = Arc<Vec<u8>>;

/// Where a fetch stands.
enum FlightState {
    Pending,
    Ready(Block),
    /// The fetch failed or was abandoned; errors are never cached, so a
    /// waiter tries again itself.
    Failed,
}

/// A fetch of one block in progress.
pub struct Flight {
    state: Mutex<FlightState>,
    done: Condvar,
}

impl Flight {
    fn new() -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(FlightState::Pending),
            done: Condvar::new(),
        })
    }

    fn is_pending(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            FlightState::Pending
        )
    }

    /// Waits for the fetch to end: the block, or `None` if it failed.
    pub fn wait(&self) -> Option<Block> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                FlightState::Pending => {
                    state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                FlightState::Ready(b) => return Some(b.clone()),
                FlightState::Failed => return None,
            }
        }
    }

    /// Ends the fetch and wakes the waiters. Only the first call counts.
    pub fn finish(&self, result: Option<Block>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, FlightState::Pending) {
            *state = match result {
                Some(b) => FlightState::Ready(b),
                None => FlightState::Failed,
            };
            self.done.notify_all();
        }
    }
}

/// The right to fetch one block. Dropping it unfinished (an error, a
/// prefetch queue that was full, a panic) fails the flight so waiters retry.
pub struct Ticket {
    pub block: u64,
    pub flight: Arc<Flight>,
    /// Fetched for a sequential stream (see the module doc).
    pub scan: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.flight.finish(None);
    }
}

/// What a lookup found.
pub enum Lookup {
    /// The block is cached.
    Hit(Block),
    /// Someone is fetching it: wait on this flight.
    Wait(Arc<Flight>),
    /// Nobody has it: the caller fetches it with this ticket.
    Fetch(Ticket),
}

struct Slot {
    block: u64,
    data: Block,
    referenced: bool,
}

/// A CLOCK cache of at most `capacity` blocks, each counted as
/// `slot_bytes` of a budget it may share with other shards and caches.
pub struct Shard {
    index: HashMap<u64, usize>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    inflight: HashMap<u64, Arc<Flight>>,
    /// The slot of the scan block inserted last, which the next scan block
    /// replaces once the shard is full.
    mru_scan: Option<usize>,
    budget: Arc<CacheBudget>,
    slot_bytes: u64,
}

impl Shard {
    pub fn new(capacity: usize, budget: Arc<CacheBudget>, slot_bytes: u64) -> Self {
        Shard {
            index: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
            capacity: capacity.max(1),
            inflight: HashMap::new(),
            mru_scan: None,
            budget,
            slot_bytes,
        }
    }

    /// The cached block, or who fetches it.
    pub fn lookup(&mut self, block: u64) -> Lookup {
        if let Some(slot) = self.index.get(&block).and_then(|&i| self.slots.get_mut(i)) {
            slot.referenced = true;
            return Lookup::Hit(slot.data.clone());
        }
        if let Some(f) = self.inflight.get(&block) {
            if f.is_pending() {
                return Lookup::Wait(f.clone());
            }
        }
        let flight = Flight::new();
        self.inflight.insert(block, flight.clone());
        Lookup::Fetch(Ticket {
            block,
            flight,
            scan: false,
        })
    }

    /// Ends the fetch of `ticket`: caches `data` if it is `Some`.
    pub fn complete(&mut self, ticket: &Ticket, data: Option<&Block>) {
        if self
            .inflight
            .get(&ticket.block)
            .is_some_and(|f| Arc::ptr_eq(f, &ticket.flight))
        {
            self.inflight.remove(&ticket.block);
        }
        if let Some(d) = data {
            self.insert(ticket.block, d.clone(), ticket.scan);
        }
    }

    /// Whether `block` is cached (does not count as a use).
    #[cfg(test)]
    pub fn contains(&self, block: u64) -> bool {
        self.index.contains_key(&block)
    }

    fn insert(&mut self, block: u64, data: Block, scan: bool) {
        if let Some(slot) = self.index.get(&block).and_then(|&i| self.slots.get_mut(i)) {
            slot.data = data;
            slot.referenced = true;
            return;
        }
        let new = Slot {
            block,
            data,
            referenced: false,
        };
        if self.slots.len() < self.capacity && self.budget.try_take(self.slot_bytes) {
            self.index.insert(block, self.slots.len());
            if scan {
                self.mru_scan = Some(self.slots.len());
            }
            self.slots.push(new);
            return;
        }
        if self.slots.is_empty() {
            return; // the shared budget is spent elsewhere: not cached
        }
        // `mru_scan` always names a slot holding a scan block: it is
        // cleared when an ordinary block takes that slot.
        let victim = match self.mru_scan.filter(|_| scan) {
            Some(i) => i,
            None => self.clock_victim(),
        };
        if scan {
            self.mru_scan = Some(victim);
        } else if self.mru_scan == Some(victim) {
            self.mru_scan = None;
        }
        self.index.remove(&self.slots[victim].block);
        self.slots[victim] = new;
        self.index.insert(block, victim);
    }

    /// CLOCK: clears reference bits until an unreferenced slot comes round.
    /// Only called on a shard with at least one slot.
    fn clock_victim(&mut self) -> usize {
        let n = self.slots.len();
        loop {
            let hand = self.hand % n;
            self.hand = (hand + 1) % n;
            let slot = &mut self.slots[hand];
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            return hand;
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.budget
            .give_back((self.slots.len() as u64).saturating_mul(self.slot_bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(capacity: usize) -> Shard {
        Shard::new(capacity, Arc::new(CacheBudget::new(u64::MAX)), 1)
    }

    fn fill(shard: &mut Shard, block: u64) {
        fill_as(shard, block, false)
    }

    fn fill_as(shard: &mut Shard, block: u64, scan: bool) {
        match shard.lookup(block) {
            Lookup::Fetch(mut t) => {
                t.scan = scan;
                let data: Block = Arc::new(vec![block as u8; 4]);
                shard.complete(&t, Some(&data));
                t.flight.finish(Some(data));
            }
            _ => panic!("block {block} should not be cached yet"),
        }
    }

    #[test]
    fn clock_evicts_unreferenced_blocks_first() {
        let mut s = shard(3);
        for b in 0..3 {
            fill(&mut s, b);
        }
        assert!(matches!(s.lookup(0), Lookup::Hit(_)));
        fill(&mut s, 3); // evicts 1: 0 was referenced
        assert!(s.contains(0) && !s.contains(1) && s.contains(2) && s.contains(3));
    }

    #[test]
    fn a_second_lookup_waits_and_a_dropped_ticket_lets_the_next_one_fetch() {
        let mut s = shard(2);
        let Lookup::Fetch(t) = s.lookup(7) else {
            panic!("expected Fetch")
        };
        let Lookup::Wait(f) = s.lookup(7) else {
            panic!("expected Wait")
        };
        drop(t);
        assert!(f.wait().is_none());
        assert!(matches!(s.lookup(7), Lookup::Fetch(_)));
    }

    #[test]
    fn a_scan_longer_than_the_shard_churns_one_slot_and_keeps_the_rest() {
        let mut s = shard(4);
        for pass in 0..2 {
            for b in 0..10 {
                if pass == 1 && b < 3 {
                    assert!(matches!(s.lookup(b), Lookup::Hit(_)), "block {b}");
                    continue;
                }
                if !s.contains(b) {
                    fill_as(&mut s, b, true);
                }
            }
        }
        assert!(s.contains(0) && s.contains(1) && s.contains(2) && s.contains(9));
        // An out-of-sequence block runs the CLOCK: the blocks the second
        // pass used are referenced, so it takes the stream's block.
        fill(&mut s, 100);
        assert!(s.contains(100) && !s.contains(9) && s.contains(1) && s.contains(2));
        // The next stream block takes a slot by CLOCK, the one after it
        // replaces that one.
        fill_as(&mut s, 11, true);
        fill_as(&mut s, 12, true);
        assert!(s.contains(12) && !s.contains(11) && s.contains(100));
    }

    #[test]
    fn shards_sharing_a_budget_replace_their_own_blocks_once_it_is_spent() {
        let budget = Arc::new(CacheBudget::new(3));
        let mut a = Shard::new(10, budget.clone(), 1);
        let mut b = Shard::new(10, budget.clone(), 1);
        fill(&mut a, 0);
        fill(&mut a, 1);
        fill(&mut b, 0);
        assert_eq!(budget.used(), 3);
        // `a` is under its capacity but the budget is spent: it replaces
        // one of its own blocks.
        fill(&mut a, 2);
        assert!(a.contains(2) && (a.contains(0) ^ a.contains(1)));
        assert!(b.contains(0) && budget.used() == 3);
        drop(b);
        assert_eq!(budget.used(), 2);
        let mut c = Shard::new(10, budget.clone(), 1);
        fill(&mut c, 5);
        let mut d = Shard::new(10, budget.clone(), 1);
        fill(&mut d, 6); // nothing left and nothing to replace: not cached
        assert!(c.contains(5) && !d.contains(6) && budget.used() == 3);
    }
}
