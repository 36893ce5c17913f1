//! The global in-flight budget: memory that requests being decoded may take, all receivers
//! together.
//!
//! Each request's decoded form is bounded by [`crate::model::cost`] relative to its own size,
//! but many requests at once could still add up. Before a receiver decodes a request it reserves
//! the request's estimated cost here, and holds the reservation until the request is answered.
//! When the budget is spent, the request waits briefly for others to finish and is then refused
//! with a retryable error (503 / UNAVAILABLE); a request that alone exceeds the whole budget is
//! refused as too large.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ReceiverError;

/// The default budget: decoded requests in flight, all receivers together.
pub const DEFAULT_BYTES: u64 = crate::config::DEFAULT_IN_FLIGHT_DECODE_MIB << 20;

/// How long a request waits for room before it is refused.
pub const WAIT: Duration = Duration::from_millis(500);

/// Reservations are counted in KiB so that a `u32` permit count covers any budget.
const UNIT: u64 = 1024;

#[derive(Debug)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    capacity: u64,
    /// `sluice_receiver_in_flight_bytes{state="used"}`, once a receiver reports it.
    used: OnceLock<prometheus::IntGauge>,
}

/// A reservation, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    budget: Arc<InFlight>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.budget.report();
    }
}

impl InFlight {
    pub fn new(bytes: u64) -> InFlight {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX));
        InFlight {
            permits: Arc::new(Semaphore::new(units as usize)),
            capacity: units,
            used: OnceLock::new(),
        }
    }

    /// Reports the bytes in use to `metrics` (the first caller's metrics are kept).
    pub fn report_to(&self, metrics: &crate::telemetry::metrics::SelfMetrics) {
        let gauges = &metrics.receiver_in_flight_bytes;
        gauges
            .with_label_values(&["budget"])
            .set(i64::try_from(self.capacity()).unwrap_or(i64::MAX));
        let _ = self.used.set(gauges.with_label_values(&["used"]));
        self.report();
    }

    fn report(&self) {
        if let Some(g) = self.used.get() {
            let used = self.capacity().saturating_sub(self.available());
            g.set(i64::try_from(used).unwrap_or(i64::MAX));
        }
    }

    /// The budget every receiver of the process shares.
    pub fn shared() -> Arc<InFlight> {
        static SHARED: OnceLock<Arc<InFlight>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(InFlight::new(DEFAULT_BYTES)))
            .clone()
    }

    /// Bytes of the budget not reserved now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    pub fn capacity(&self) -> u64 {
        self.capacity * UNIT
    }

    /// Reserves `bytes`, waiting at most `wait` for room.
    pub async fn reserve(
        self: &Arc<Self>,
        bytes: u64,
        wait: Duration,
    ) -> Result<Reservation, ReceiverError> {
        let units = bytes.div_ceil(UNIT).max(1);
        if units > self.capacity {
            return Err(ReceiverError::OverInFlightBudget {
                needed: bytes,
                budget: self.capacity(),
            });
        }
        // `units` fits in u32: it is at most `capacity`, which was clamped to u32.
        let units = units as u32;
        let reservation = |p| {
            self.report();
            Reservation {
                permit: Some(p),
                budget: self.clone(),
            }
        };
        if let Ok(p) = self.permits.clone().try_acquire_many_owned(units) {
            return Ok(reservation(p));
        }
        match tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(units)).await {
            Ok(Ok(p)) => Ok(reservation(p)),
            _ => Err(ReceiverError::InFlightFull {
                needed: bytes,
                budget: self.capacity(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_add_up_and_are_given_back() {
        let budget = Arc::new(InFlight::new(10 * UNIT));
        let a = budget
            .reserve(6 * UNIT, Duration::ZERO)
            .await
            .expect("room");
        assert_eq!(budget.available(), 4 * UNIT);
        let refused = budget
            .reserve(6 * UNIT, Duration::from_millis(20))
            .await
            .expect_err("no room");
        assert!(matches!(refused, ReceiverError::InFlightFull { .. }));
        assert!(refused.retryable());
        drop(a);
        let _b = budget
            .reserve(6 * UNIT, Duration::ZERO)
            .await
            .expect("room");
        let too_big = budget
            .reserve(11 * UNIT, Duration::ZERO)
            .await
            .expect_err("never fits");
        assert!(matches!(too_big, ReceiverError::OverInFlightBudget { .. }));
        assert!(!too_big.retryable());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_that_frees_up() {
        let budget = Arc::new(InFlight::new(4 * UNIT));
        let held = budget
            .reserve(4 * UNIT, Duration::ZERO)
            .await
            .expect("room");
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(UNIT, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.expect("joins").is_ok());
    }
}
