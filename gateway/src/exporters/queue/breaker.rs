//! A circuit breaker per exporter: closed, open, half-open.
//!
//! Consecutive retryable failures (a dead or overloaded backend; not permanent errors, which
//! prove the backend is alive) open it after `failure_threshold`. While open, no consumer of the
//! exporter sends: batches wait in the sending queue (or are dropped by `max_age` and the retry
//! budget, both counted) instead of hammering the backend. After `open_duration` one consumer
//! gets a trial send (half-open): success closes the breaker, failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

use crate::config::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    open_until: Instant,
    trial_in_flight: bool,
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    gauge: IntGauge,
}

/// What a consumer may do now.
pub enum Permit {
    Send,
    /// Wait this long, then ask again.
    Wait(Duration),
}

impl Breaker {
    pub fn new(config: BreakerConfig, gauge: IntGauge) -> Breaker {
        gauge.set(0);
        Breaker {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                open_until: Instant::now(),
                trial_in_flight: false,
            }),
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether `/health/ready` should answer 503 now.
    pub fn blocks_readiness(&self) -> bool {
        self.config.affects_readiness && self.state() == State::Open
    }

    fn set(&self, inner: &mut Inner, state: State) {
        inner.state = state;
        self.gauge.set(match state {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        });
    }

    pub fn permit(&self) -> Permit {
        if !self.config.enabled {
            return Permit::Send;
        }
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Permit::Send,
            State::Open => {
                let now = Instant::now();
                if now < inner.open_until {
                    return Permit::Wait(inner.open_until - now);
                }
                self.set(&mut inner, State::HalfOpen);
                inner.trial_in_flight = true;
                Permit::Send
            }
            State::HalfOpen if inner.trial_in_flight => Permit::Wait(Duration::from_millis(50)),
            State::HalfOpen => {
                inner.trial_in_flight = true;
                Permit::Send
            }
        }
    }

    /// A send succeeded (or failed permanently: the backend answered).
    pub fn success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.trial_in_flight = false;
        if inner.state != State::Closed {
            tracing::info!("Exporter circuit breaker closed: the backend answers again.");
            self.set(&mut inner, State::Closed);
        }
    }

    /// A send failed with a retryable error.
    pub fn failure(&self) {
        if !self.config.enabled {
            return;
        }
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        inner.trial_in_flight = false;
        let trip = inner.state == State::HalfOpen
            || (inner.state == State::Closed && inner.failures >= self.config.failure_threshold);
        if trip {
            inner.open_until = Instant::now() + self.config.open_duration;
            if inner.state == State::Closed {
                tracing::warn!(
                    failures = inner.failures,
                    open_ms = self.config.open_duration.as_millis() as u64,
                    "Exporter circuit breaker opened: sends pause while the backend fails."
                );
            }
            self.set(&mut inner, State::Open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> Breaker {
        Breaker::new(
            BreakerConfig {
                enabled: true,
                failure_threshold: threshold,
                open_duration: Duration::from_millis(open_ms),
                affects_readiness: false,
            },
            IntGauge::new("t", "t").expect("gauge"),
        )
    }

    #[test]
    fn opens_after_the_threshold_then_lets_one_trial_through() {
        let b = breaker(3, 30);
        for _ in 0..2 {
            b.failure();
            assert_eq!(b.state(), State::Closed);
        }
        b.failure();
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.gauge.get(), 1);
        assert!(matches!(b.permit(), Permit::Wait(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(b.permit(), Permit::Send), "one trial");
        assert_eq!(b.state(), State::HalfOpen);
        assert!(matches!(b.permit(), Permit::Wait(_)), "only one");
        b.failure();
        assert_eq!(b.state(), State::Open, "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(b.permit(), Permit::Send));
        b.success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.gauge.get(), 0);
        assert!(matches!(b.permit(), Permit::Send));
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(2, 1000);
        b.failure();
        b.success();
        b.failure();
        assert_eq!(b.state(), State::Closed);
    }
}
