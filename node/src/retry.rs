//! Error classes and the one backoff policy every retry loop uses.
//!
//! An error is [`Transient`](ErrorClass::Transient) when the same call may succeed later
//! unchanged (the network, no leader during an election, a timeout, a store that does not
//! answer) and [`Permanent`](ErrorClass::Permanent) when it never will (validation, too large,
//! refused credentials, corrupt data). Only transient errors are retried; a permanent one is
//! returned at once so the caller can set the work aside and say why.

use std::future::Future;
use std::time::{Duration, Instant};

/// Whether retrying the same call can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// It may succeed later, unchanged.
    Transient,
    /// It will fail the same way every time.
    Permanent,
}

/// Errors that know their class.
pub trait Classify {
    /// Whether retrying can help.
    fn class(&self) -> ErrorClass;

    /// Shorthand for `class() == Transient`.
    fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

/// The class of an operating-system error on a file that is part of the work: a missing or
/// unreadable file, or one of the wrong kind, stays so however often it is tried; anything else
/// (a full disk, an I/O error, an interrupted call) may pass.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | PermissionDenied | InvalidInput | InvalidData | IsADirectory | NotADirectory
        | InvalidFilename | FileTooLarge | Unsupported => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// Exponential backoff with jitter, optionally bounded by a total deadline.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    deadline: Option<Duration>,
}

impl Backoff {
    /// Waits `first`, then doubles up to `max`, for ever (until the error is permanent).
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            deadline: None,
        }
    }

    /// Gives up once `total` has passed since the first try.
    pub const fn with_deadline(mut self, total: Duration) -> Self {
        self.deadline = Some(total);
        self
    }

    /// A fresh sequence of delays for one operation.
    pub fn start(&self) -> Delays {
        Delays {
            policy: *self,
            next: self.first,
            started: Instant::now(),
            tries: 0,
        }
    }

    /// Runs `op` until it succeeds, fails permanently, or the deadline passes; each transient
    /// failure is logged once with `what` and the delay before the next try.
    pub async fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        E: Classify + std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut delays = self.start();
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => match delays.next_delay() {
                    Some(wait) => {
                        tracing::warn!(error = %e, "{what} failed; retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
}

/// The delays of one operation's retries.
#[derive(Debug)]
pub struct Delays {
    policy: Backoff,
    next: Duration,
    started: Instant,
    tries: u32,
}

impl Delays {
    /// The wait before the next try, or `None` once the deadline would pass during it.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.tries += 1;
        let wait = jitter(self.next);
        self.next = (self.next * 2).min(self.policy.max);
        match self.policy.deadline {
            Some(total) if self.started.elapsed() + wait >= total => None,
            _ => Some(wait),
        }
    }

    /// Sleeps the next delay; false when the deadline has come instead.
    pub async fn wait(&mut self) -> bool {
        match self.next_delay() {
            Some(d) => {
                tokio::time::sleep(d).await;
                true
            }
            None => false,
        }
    }

    /// Failed tries so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Time since the first try.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// 75–100 % of `d`, so many clients that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let frac = 0.75 + 0.25 * f64::from(nanos % 1000) / 1000.0;
    d.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(ErrorClass);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl Classify for E {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    const QUICK: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, E> = QUICK
            .retry("op", || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(E(ErrorClass::Transient))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(r.ok(), Some(3));
    }

    #[tokio::test]
    async fn a_permanent_error_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = QUICK
            .retry("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(ErrorClass::Permanent))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_deadline_ends_transient_retries() {
        let policy = QUICK.with_deadline(Duration::from_millis(30));
        let started = Instant::now();
        let r: Result<(), E> = policy
            .retry("op", || async { Err(E(ErrorClass::Transient)) })
            .await;
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut d = Backoff::new(Duration::from_millis(100), Duration::from_millis(400)).start();
        let waits: Vec<Duration> = (0..5).filter_map(|_| d.next_delay()).collect();
        assert_eq!(waits.len(), 5);
        assert!(waits[0] <= Duration::from_millis(100) && waits[0] >= Duration::from_millis(75));
        assert!(waits[4] <= Duration::from_millis(400) && waits[4] >= Duration::from_millis(300));
        assert_eq!(d.tries(), 5);
    }
}
