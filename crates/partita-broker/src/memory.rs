//! Memory budgets: a fixed number of bytes that requests or responses may hold at once.
//!
//! A connection that needs more than is free waits (its socket is simply not read, or its
//! fetch not yet answered) until others give memory back, as Kafka's `queued.max.request.bytes`
//! pool does. A single claim larger than the whole budget takes the whole budget, so one
//! oversized request still goes through, alone.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budgets are counted in units of this many bytes, so that a budget of several GiB fits the
/// semaphore's `u32` claims.
const UNIT: usize = 1024;

/// A pool of bytes shared by every connection. `None` inside means unbounded.
#[derive(Clone, Debug)]
pub(crate) struct MemoryBudget {
    pool: Option<Arc<Semaphore>>,
    units: u32,
}

/// Bytes claimed from a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct MemoryClaim {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `bytes`, or an unbounded one for `None`.
    pub(crate) fn new(bytes: Option<usize>) -> MemoryBudget {
        match bytes {
            None => MemoryBudget {
                pool: None,
                units: 0,
            },
            Some(bytes) => {
                let units = bytes.div_ceil(UNIT).clamp(1, u32::MAX as usize) as u32;
                MemoryBudget {
                    pool: Some(Arc::new(Semaphore::new(units as usize))),
                    units,
                }
            }
        }
    }

    /// Claims `bytes`, waiting until they are free.
    pub(crate) async fn claim(&self, bytes: usize) -> MemoryClaim {
        let Some(pool) = &self.pool else {
            return MemoryClaim { permit: None };
        };
        let permit = Arc::clone(pool)
            .acquire_many_owned(self.units_for(bytes))
            .await
            .ok();
        MemoryClaim { permit }
    }

    /// Bytes free now; `None` when unbounded.
    pub(crate) fn available(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.available_permits() * UNIT)
    }

    /// Bytes in the budget; `None` when unbounded.
    pub(crate) fn capacity(&self) -> Option<usize> {
        self.pool.as_ref().map(|_| self.units as usize * UNIT)
    }

    fn units_for(&self, bytes: usize) -> u32 {
        (bytes.div_ceil(UNIT).max(1)).min(self.units as usize) as u32
    }
}

impl MemoryClaim {
    /// Gives back all but `bytes` of the claim, once it is known how much is really held.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        if let Some(permit) = &mut self.permit {
            let keep = bytes.div_ceil(UNIT).max(1);
            let excess = permit.num_permits().saturating_sub(keep);
            if excess > 0 {
                drop(permit.split(excess));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_claim_waits_until_memory_is_given_back() {
        let budget = MemoryBudget::new(Some(10 * UNIT));
        let first = budget.claim(6 * UNIT).await;
        assert_eq!(budget.available(), Some(4 * UNIT));
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.claim(6 * UNIT).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second claim must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second claim goes through once the first is dropped")
            .unwrap();
        assert_eq!(budget.available(), Some(4 * UNIT));
        drop(second);
        assert_eq!(budget.available(), Some(10 * UNIT));
    }

    #[tokio::test]
    async fn a_claim_larger_than_the_budget_takes_all_of_it() {
        let budget = MemoryBudget::new(Some(4 * UNIT));
        let claim = budget.claim(100 * UNIT).await;
        assert_eq!(budget.available(), Some(0));
        drop(claim);
        assert_eq!(budget.capacity(), Some(4 * UNIT));
    }

    #[tokio::test]
    async fn a_shrunk_claim_gives_back_the_rest() {
        let budget = MemoryBudget::new(Some(10 * UNIT));
        let mut claim = budget.claim(8 * UNIT).await;
        claim.shrink_to(3 * UNIT - 100);
        assert_eq!(budget.available(), Some(7 * UNIT));
        drop(claim);
        assert_eq!(budget.available(), Some(10 * UNIT));
    }

    #[tokio::test]
    async fn an_unbounded_budget_never_waits() {
        let budget = MemoryBudget::new(None);
        let mut claims = Vec::new();
        for _ in 0..10 {
            claims.push(budget.claim(usize::MAX / 2).await);
        }
        assert_eq!(budget.available(), None);
    }
}
