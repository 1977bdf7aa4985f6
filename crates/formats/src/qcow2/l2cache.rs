//! A small least-recently-used cache of L2 tables, keyed by the table's
//! host offset and bounded in bytes. Lookups happen under the caller's
//! mutex; tables are shared as `Arc<[u64]>` so the lock is not held while a
//! table is used.

use std::collections::HashMap;
use std::sync::Arc;

/// Total bytes of L2 tables kept (at least [`MIN_TABLES`] tables).
const BUDGET_BYTES: usize = 16 << 20;
const MIN_TABLES: usize = 4;

pub(crate) struct L2Cache {
    capacity: usize,
    tick: u64,
    tables: HashMap<u64, (u64, Arc<[u64]>)>,
}

impl L2Cache {
    /// A cache for tables of `table_bytes` bytes each.
    pub fn new(table_bytes: usize) -> Self {
        L2Cache {
            capacity: (BUDGET_BYTES / table_bytes.max(1)).max(MIN_TABLES),
            tick: 0,
            tables: HashMap::new(),
        }
    }

    pub fn get(&mut self, offset: u64) -> Option<Arc<[u64]>> {
        self.tick += 1;
        let tick = self.tick;
        self.tables.get_mut(&offset).map(|(used, table)| {
            *used = tick;
            table.clone()
        })
    }

    pub fn insert(&mut self, offset: u64, table: Arc<[u64]>) {
        if self.tables.len() >= self.capacity && !self.tables.contains_key(&offset) {
            let oldest = self
                .tables
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.tables.remove(&k);
            }
        }
        self.tick += 1;
        self.tables.insert(offset, (self.tick, table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_table() {
        let mut c = L2Cache::new(BUDGET_BYTES / 4);
        for off in 0..4u64 {
            c.insert(off, Arc::from(vec![off]));
        }
        assert!(c.get(0).is_some()); // 1 is now the oldest
        c.insert(9, Arc::from(vec![9]));
        assert!(c.get(1).is_none());
        assert_eq!(c.get(0).unwrap()[0], 0);
        assert_eq!(c.get(9).unwrap()[0], 9);
    }
}
