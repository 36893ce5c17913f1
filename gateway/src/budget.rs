//! Byte budgets of queues: a pipeline's queue and an exporter's memory queue hold batches up to
//! a number *and* up to a size, so that a few large batches cannot fill memory that the number
//! was sized for with small ones (the Collector's `sizer: bytes`).
//!
//! A batch takes its size from the budget when it enters the queue and gives it back when the
//! [`BytesHeld`] it carries is dropped, after it has left the queue and been handed on. The
//! size is the batch's protobuf encoding (what the gateway holds of a batch it only scanned;
//! decoded forms are dropped before queueing). A batch larger than the whole budget takes all
//! of it, so it still passes alone.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budgets count in KiB, so that a `u32` of semaphore permits spans any budget in MiB.
const UNIT: u64 = 1024;

/// A queue's budget in bytes.
#[derive(Debug)]
pub struct ByteBudget {
    units: Arc<Semaphore>,
    limit: u32,
}

/// Bytes taken from a [`ByteBudget`], given back on drop.
#[derive(Debug, Default)]
pub struct BytesHeld(Option<OwnedSemaphorePermit>);

impl ByteBudget {
    /// A budget of `mib` MiB (at least one).
    pub fn mib(mib: u64) -> Arc<ByteBudget> {
        let limit = u32::try_from(mib.max(1).saturating_mul(1024)).unwrap_or(u32::MAX);
        Arc::new(ByteBudget {
            units: Arc::new(Semaphore::new(limit as usize)),
            limit,
        })
    }

    fn units(&self, bytes: usize) -> u32 {
        let units = (bytes as u64).div_ceil(UNIT).max(1);
        u32::try_from(units).unwrap_or(u32::MAX).min(self.limit)
    }

    /// Takes `bytes` if the budget has them now.
    pub fn try_take(&self, bytes: usize) -> Option<BytesHeld> {
        self.units
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()
            .map(|p| BytesHeld(Some(p)))
    }

    /// Takes `bytes`, waiting until they are given back. Batches wait in turn: a large one is
    /// not passed over for ever by small ones.
    pub async fn take(&self, bytes: usize) -> BytesHeld {
        // The semaphore is never closed.
        BytesHeld(
            self.units
                .clone()
                .acquire_many_owned(self.units(bytes))
                .await
                .ok(),
        )
    }

    /// The bytes held now.
    pub fn used_bytes(&self) -> u64 {
        u64::from(self.limit - self.units.available_permits() as u32) * UNIT
    }

    pub fn limit_bytes(&self) -> u64 {
        u64::from(self.limit) * UNIT
    }
}

impl BytesHeld {
    /// Nothing held: for batches a budget does not count.
    pub fn none() -> BytesHeld {
        BytesHeld(None)
    }

    /// The bytes held (whole KiB).
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.num_permits() as u64 * UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_taken_given_back_and_waited_for() {
        let budget = ByteBudget::mib(1);
        assert_eq!(budget.limit_bytes(), 1 << 20);
        let a = budget.try_take(600 << 10).expect("room");
        assert_eq!(budget.used_bytes(), 600 << 10);
        assert!(budget.try_take(600 << 10).is_none(), "over the budget");
        // Anything rounds up to a whole KiB; nothing is free.
        let small = budget.try_take(1).expect("room");
        assert_eq!((small.bytes(), budget.used_bytes()), (1 << 10, 601 << 10));
        drop(small);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(600 << 10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let b = waiting.await.expect("taken once given back");
        assert_eq!(budget.used_bytes(), 600 << 10);
        drop(b);
        // Larger than the whole budget: takes all of it, and passes alone.
        let huge = budget.try_take(5 << 20).expect("alone");
        assert_eq!(budget.used_bytes(), 1 << 20);
        assert!(budget.try_take(1).is_none());
        drop(huge);
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(BytesHeld::none().bytes(), 0);
    }
}
