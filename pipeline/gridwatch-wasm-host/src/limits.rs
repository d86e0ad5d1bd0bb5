//! The store's memory budget.
//!
//! `wasmtime::StoreLimits` bounds each linear memory on its own; a chain
//! keeps several modules in one store, so on top of it this limiter keeps a
//! running total over all of them. A denied growth traps (instead of making
//! `memory.grow` return -1) so that a guest cannot carry on half-allocated,
//! and the denial is remembered so that the error can say "memory limit"
//! rather than "trap".

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// A denied memory growth, as the limiter saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Denial {
    pub current: usize,
    pub desired: usize,
    pub limit: usize,
}

/// The error a denied growth traps with.
#[derive(Debug, thiserror::Error)]
#[error(
    "growing guest memory from {current} to {desired} bytes would pass the store's limit of {limit} bytes"
)]
pub(crate) struct MemoryLimitExceeded {
    current: usize,
    desired: usize,
    limit: usize,
}

/// Host bytes per table slot (a pointer), as counted against the budget.
const TABLE_SLOT_BYTES: usize = std::mem::size_of::<usize>();

#[derive(Debug)]
pub(crate) struct GuestLimiter {
    inner: StoreLimits,
    limit: usize,
    /// Bytes of linear memory granted to all memories of the store.
    used: usize,
    /// The last grant, taken back if the growth then fails.
    last_grant: usize,
    /// The same for tables.
    last_table_grant: usize,
    pub denied: Option<Denial>,
}

impl GuestLimiter {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: StoreLimitsBuilder::new()
                .memory_size(limit)
                .trap_on_grow_failure(true)
                .build(),
            limit,
            used: 0,
            last_grant: 0,
            last_table_grant: 0,
            denied: None,
        }
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let extra = desired.saturating_sub(current);
        if self.used.saturating_add(extra) > self.limit {
            let denial = Denial {
                current: self.used,
                desired: self.used.saturating_add(extra),
                limit: self.limit,
            };
            self.denied = Some(denial);
            return Err(MemoryLimitExceeded {
                current: denial.current,
                desired: denial.desired,
                limit: denial.limit,
            }
            .into());
        }
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.used += extra;
            self.last_grant = extra;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
        self.inner.memory_grow_failed(error)
    }

    /// Table slots live in host memory (a pointer each), outside any linear
    /// memory, so they count against the same budget: otherwise `table.grow`
    /// would let a guest allocate host memory without limit.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let extra = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_SLOT_BYTES);
        if self.used.saturating_add(extra) > self.limit {
            let denial = Denial {
                current: self.used,
                desired: self.used.saturating_add(extra),
                limit: self.limit,
            };
            self.denied = Some(denial);
            return Err(MemoryLimitExceeded {
                current: denial.current,
                desired: denial.desired,
                limit: denial.limit,
            }
            .into());
        }
        let allowed = self.inner.table_growing(current, desired, maximum)?;
        if allowed {
            self.used += extra;
            self.last_table_grant = extra;
        }
        Ok(allowed)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(self.last_table_grant);
        self.last_table_grant = 0;
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_over_all_memories_is_limited() {
        let mut limiter = GuestLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).expect("first"));
        assert!(limiter.memory_growing(0, 30, None).expect("second"));
        assert!(limiter.memory_growing(60, 80, None).is_err());
        assert_eq!(
            limiter.denied,
            Some(Denial {
                current: 90,
                desired: 110,
                limit: 100
            })
        );
        // A growth the engine then fails is given back (and traps too).
        assert!(limiter.memory_growing(30, 40, None).expect("third"));
        assert!(
            limiter
                .memory_grow_failed(wasmtime::Error::msg("no"))
                .is_err()
        );
        assert!(limiter.memory_growing(30, 40, None).expect("again"));
        assert!(
            limiter.memory_growing(0, 1, None).is_err(),
            "100 of 100 used"
        );
    }
}
