//! Exponential back-off for transient failures (an unreachable store, a lost race).

use std::future::Future;
use std::time::{Duration, Instant};

/// How to retry.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Give up once this much time has passed.
    pub deadline: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before attempt `n` (0-based): `initial · 2ⁿ`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.initial.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(self.max)
    }

    /// Run `op` until it succeeds, fails permanently (`transient` says no), or the deadline
    /// passes; `report` hears of every transient failure and the delay before the next try.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut op: F,
        transient: impl Fn(&E) -> bool,
        mut report: impl FnMut(&E, Duration),
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && started.elapsed() < self.deadline => {
                    let delay = self.delay(attempt);
                    report(&e, delay);
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            deadline: Duration::ZERO,
        };
        let delays: Vec<u128> = (0..6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let b = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        };
        let mut calls = 0;
        let mut reports = 0;
        let out: Result<u32, &str> = b
            .run(
                || {
                    calls += 1;
                    let n = calls;
                    async move { if n < 3 { Err("down") } else { Ok(n) } }
                },
                |e| *e == "down",
                |_, _| reports += 1,
            )
            .await;
        assert_eq!(out, Ok(3));
        assert_eq!(reports, 2);
        let mut calls = 0;
        let out: Result<u32, &str> = b
            .run(
                || {
                    calls += 1;
                    async { Err("broken") }
                },
                |e| *e == "down",
                |_, _| {},
            )
            .await;
        assert_eq!((out, calls), (Err("broken"), 1), "permanent errors are not retried");
    }
}
