//! Retries with exponential backoff and full jitter, shared by the HTTP and S3 backends.
//!
//! What is retried is decided in one place ([`status_is_transient`] and
//! [`crate::Error::is_transient`]): connection errors, timeouts, 5xx, 429 and S3 `SlowDown`.
//! Other 4xx answers are the caller's or the object's problem and are never retried. Every
//! request is bounded both in attempts and in total time, so a dead server gives an error
//! within the configured limits instead of a hang.

use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// How hard to retry one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most attempts that fail without progress (at least 1).
    pub max_attempts: u32,
    /// Most time from the first attempt until giving up; no retry starts after it.
    pub max_time: Duration,
    /// Delay before the first retry; doubles after each failure.
    pub base_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_time: Duration::from_secs(60),
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// What one attempt achieved.
pub(crate) enum Attempt<T> {
    /// Done.
    Done(T),
    /// Failed; `progress` says whether it moved the request forward (a body cut short after
    /// some bytes), which resets the failure count and the delay.
    Failed {
        /// The failure.
        err: Error,
        /// Whether the attempt made progress.
        progress: bool,
    },
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails permanently, or the budget runs out; the last
    /// error is returned, annotated with how many attempts were made.
    pub(crate) fn run<T>(&self, mut attempt: impl FnMut(u32) -> Attempt<T>) -> Result<T> {
        let start = Instant::now();
        let mut failures = 0u32;
        let mut delay = self.base_delay;
        let mut n = 0u32;
        loop {
            n += 1;
            let (err, progress) = match attempt(n) {
                Attempt::Done(v) => return Ok(v),
                Attempt::Failed { err, progress } => (err, progress),
            };
            if !err.is_transient() {
                return Err(err);
            }
            if progress {
                failures = 0;
                delay = self.base_delay;
            } else {
                failures += 1;
            }
            let wait = jitter(delay);
            if failures >= self.max_attempts.max(1) || start.elapsed() + wait >= self.max_time {
                return Err(gave_up(err, n, start.elapsed()));
            }
            std::thread::sleep(wait);
            delay = (delay * 2).min(self.max_delay);
        }
    }
}

/// Full jitter: a uniformly random delay in `[d/2, d]`, so that many clients failing at once
/// do not retry in lockstep, while still growing.
fn jitter(d: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0x5bd1_e995);
    let half = d.as_nanos() as u64 / 2;
    Duration::from_nanos(half + if half == 0 { 0 } else { r % (half + 1) })
}

fn gave_up(err: Error, attempts: u32, elapsed: Duration) -> Error {
    match err {
        Error::Remote {
            backend,
            url,
            detail,
            transient,
        } => Error::Remote {
            backend,
            url,
            detail: format!(
                "{detail} (gave up after {attempts} attempts in {:.1} s)",
                elapsed.as_secs_f64()
            ),
            transient,
        },
        other => other,
    }
}

/// Whether an HTTP status (with the S3 error code from the body, if any) is worth retrying:
/// 5xx, 429 Too Many Requests, 408 Request Timeout, and S3 `SlowDown` whatever its status.
pub fn status_is_transient(status: u16, s3_code: Option<&str>) -> bool {
    status >= 500
        || status == 429
        || status == 408
        || matches!(
            s3_code,
            Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient<T>(n: u32) -> Attempt<T> {
        Attempt::Failed {
            err: Error::Remote {
                backend: "http",
                url: "u".into(),
                detail: format!("503 try {n}"),
                transient: true,
            },
            progress: false,
        }
    }

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: attempts,
            max_time: Duration::from_secs(10),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn retries_transient_until_success() {
        let v = quick(5)
            .run(|n| {
                if n < 4 {
                    transient(n)
                } else {
                    Attempt::Done(n)
                }
            })
            .unwrap();
        assert_eq!(v, 4);
    }

    #[test]
    fn bounded_attempts() {
        let mut calls = 0;
        let e = quick(3)
            .run::<()>(|n| {
                calls += 1;
                transient(n)
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let e = quick(5)
            .run::<()>(|_| {
                calls += 1;
                Attempt::Failed {
                    err: Error::Remote {
                        backend: "http",
                        url: "u".into(),
                        detail: "403".into(),
                        transient: false,
                    },
                    progress: false,
                }
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!e.is_transient());
    }

    #[test]
    fn progress_resets_failure_count() {
        // 10 failures, each making progress, then success: more than max_attempts in total.
        let v = quick(2)
            .run(|n| {
                if n <= 10 {
                    Attempt::Failed {
                        err: Error::Remote {
                            backend: "http",
                            url: "u".into(),
                            detail: "cut".into(),
                            transient: true,
                        },
                        progress: true,
                    }
                } else {
                    Attempt::Done(n)
                }
            })
            .unwrap();
        assert_eq!(v, 11);
    }

    #[test]
    fn bounded_time() {
        let p = RetryPolicy {
            max_attempts: 1000,
            max_time: Duration::from_millis(50),
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(20),
        };
        let mut calls = 0;
        p.run::<()>(|n| {
            calls += 1;
            transient(n)
        })
        .unwrap_err();
        assert!(calls < 10, "{calls}");
    }

    #[test]
    fn classifies_statuses() {
        assert!(status_is_transient(500, None));
        assert!(status_is_transient(503, None));
        assert!(status_is_transient(429, None));
        assert!(status_is_transient(400, Some("SlowDown")));
        assert!(!status_is_transient(404, None));
        assert!(!status_is_transient(403, Some("SignatureDoesNotMatch")));
        assert!(!status_is_transient(412, None));
    }
}
