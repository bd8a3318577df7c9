//! [`Event`]: the outcome of one send or receive, as the C++ guide reports it.

#![forbid(unsafe_code)]

use std::time::Duration;

use crate::error::{Error, Result};

/// The status of one operation: done or not yet, an error, and the bytes moved.
///
/// Returned by value (the C++ original returns a heap `Event*` the caller must delete).
/// A non-blocking receive with nothing waiting returns an event that is not done and has no error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an Event carries the operation's error, if any"]
pub struct Event {
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Nothing completed; `waited` is how long the call waited for it (zero for a non-blocking call).
    Pending {
        waited: Duration,
    },
    Done(usize),
    Failed(Error),
}

impl Event {
    /// A completed operation that moved `bytes` bytes.
    pub fn done(bytes: usize) -> Self {
        Self { state: State::Done(bytes) }
    }

    /// An operation that has not completed yet (nothing was waiting).
    pub fn pending() -> Self {
        Self::timed_out(Duration::ZERO)
    }

    /// An operation that has not completed after waiting `waited`: not done, and
    /// [`Event::into_result`] reports it as [`Error::Timeout`].
    pub fn timed_out(waited: Duration) -> Self {
        Self { state: State::Pending { waited } }
    }

    /// A failed operation. A failed event counts as done: retrying will not complete it.
    pub fn failed(error: Error) -> Self {
        Self { state: State::Failed(error) }
    }

    /// True when the operation completed, successfully or not.
    pub fn is_done(&self) -> bool {
        !matches!(self.state, State::Pending { .. })
    }

    /// 0 on success or while pending, else the error's stable [`Error::code`].
    pub fn error_code(&self) -> i32 {
        self.error().map_or(0, Error::code)
    }

    /// A human-readable description of the error, empty when there is none.
    pub fn error_message(&self) -> String {
        self.error().map(ToString::to_string).unwrap_or_default()
    }

    /// The error, if the operation failed.
    pub fn error(&self) -> Option<&Error> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Payload bytes moved (the sum of the bulk sizes); 0 unless done.
    pub fn bytes_transferred(&self) -> usize {
        match self.state {
            State::Done(n) => n,
            _ => 0,
        }
    }

    /// `Ok(Some(bytes))` when done, `Ok(None)` while pending, `Err` on failure.
    pub fn into_poll(self) -> Result<Option<usize>> {
        match self.state {
            State::Pending { .. } => Ok(None),
            State::Done(n) => Ok(Some(n)),
            State::Failed(e) => Err(e),
        }
    }

    /// `Ok(bytes)` when done; an event that is not done becomes [`Error::Timeout`] (with how long the
    /// call waited), so use this on blocking calls.
    pub fn into_result(self) -> Result<usize> {
        match self.state {
            State::Pending { waited } => {
                Err(Error::Timeout { op: "receive (nothing arrived)", after: waited, peer: None })
            }
            State::Done(n) => Ok(n),
            State::Failed(e) => Err(e),
        }
    }
}

impl From<Result<usize>> for Event {
    fn from(result: Result<usize>) -> Self {
        result.map_or_else(Self::failed, Self::done)
    }
}

impl From<Result<Option<usize>>> for Event {
    fn from(result: Result<Option<usize>>) -> Self {
        match result {
            Ok(Some(n)) => Self::done(n),
            Ok(None) => Self::pending(),
            Err(e) => Self::failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_report_like_the_cpp_event() {
        let done = Event::done(17);
        assert!(done.is_done());
        assert_eq!((done.error_code(), done.bytes_transferred()), (0, 17));
        assert!(done.error_message().is_empty());

        let pending = Event::pending();
        assert!(!pending.is_done());
        assert_eq!(pending.into_poll(), Ok(None));
        let waited = Duration::from_millis(5);
        let timed_out = Event::timed_out(waited).into_result().unwrap_err();
        assert!(matches!(timed_out, Error::Timeout { after, .. } if after == waited), "{timed_out}");

        let failed = Event::failed(Error::NoPendingMessage);
        assert!(failed.is_done());
        assert_eq!(failed.error_code(), Error::NoPendingMessage.code());
        assert!(failed.error_message().contains("recv_metadata first"));
        assert_eq!(failed.into_result(), Err(Error::NoPendingMessage));
    }
}
