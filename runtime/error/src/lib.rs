//! The one error type of farmem.
//!
//! Every farmem crate returns [`Error`]: an [`ErrorKind`] that says *what class* of failure it
//! was, and a context string that says *what* failed, with the value that made it fail and, where
//! there is one, what to do about it.
//!
//! The kinds are shared by the whole runtime because every front end maps them one to one:
//! [`ErrorKind`] is `#[repr(u32)]` and its discriminant is the C status code of `farmem.h`
//! (`FM_OK` is 0, so no kind uses it), and each kind becomes one Python exception class. A new
//! kind therefore appends a new discriminant; existing numbers never change.
//!
//! The crate sits below every other farmem crate and depends on nothing.

use std::fmt;

/// The class of a failure. The discriminant is the stable C status code.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was out of range, malformed or inconsistent with others.
    InvalidArgument = 1,
    /// The local-memory budget (or a pool sized by configuration) is exhausted.
    OutOfLocalMemory = 2,
    /// The memory servers have no room left for the data.
    OutOfFarMemory = 3,
    /// The (real or simulated) GPU has no room left.
    OutOfDeviceMemory = 4,
    /// The operation needs a feature or hardware this build or machine lacks (RDMA, CUDA).
    Unsupported = 5,
    /// An operating-system call failed.
    Io = 6,
    /// A peer broke the wire protocol (bad magic, version, length or opcode).
    Protocol = 7,
    /// The cluster token was wrong or missing.
    Auth = 8,
    /// The memory server reported a failure of its own.
    ServerError = 9,
    /// A connection was lost or a peer went away.
    Disconnected = 10,
    /// A deadline passed before the operation finished.
    Timeout = 11,
    /// A named thing (object, function, sequence, tenant) does not exist.
    NotFound = 12,
    /// The runtime, channel or handle was already closed.
    Closed = 13,
    /// A green thread or callback panicked; the message carries the panic payload.
    Panicked = 14,
    /// The data in a file was malformed (for example a CSV row).
    Parse = 15,
    /// An invariant inside farmem was violated: a bug, reported instead of a panic.
    Internal = 16,
}

impl ErrorKind {
    /// Every kind, in discriminant order (used by the C and Python layers to build their tables).
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::InvalidArgument,
        ErrorKind::OutOfLocalMemory,
        ErrorKind::OutOfFarMemory,
        ErrorKind::OutOfDeviceMemory,
        ErrorKind::Unsupported,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::Auth,
        ErrorKind::ServerError,
        ErrorKind::Disconnected,
        ErrorKind::Timeout,
        ErrorKind::NotFound,
        ErrorKind::Closed,
        ErrorKind::Panicked,
        ErrorKind::Parse,
        ErrorKind::Internal,
    ];

    /// The stable C status code of this kind (never 0, which means success).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The kind whose C status code is `code`, if any.
    pub fn from_code(code: u32) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }

    /// A short, stable, human-readable name (`"out of far memory"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::OutOfLocalMemory => "out of local memory",
            ErrorKind::OutOfFarMemory => "out of far memory",
            ErrorKind::OutOfDeviceMemory => "out of device memory",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "i/o error",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::ServerError => "server error",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Timeout => "timed out",
            ErrorKind::NotFound => "not found",
            ErrorKind::Closed => "closed",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Parse => "parse error",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A farmem failure: its [`ErrorKind`] and a message saying what failed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    context: String,
}

impl Error {
    /// An error of `kind` with a message naming what failed, the offending value and the remedy.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidArgument`].
    pub fn invalid(context: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, context)
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(context: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unsupported, context)
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(context: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, context)
    }

    /// An [`ErrorKind::Io`] error from `err`, prefixed with what was being done.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{what}: {err}"))
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The same error with `outer` put in front of its message (`"loading x.csv: ..."`).
    pub fn with_context(mut self, outer: impl fmt::Display) -> Error {
        self.context = format!("{outer}: {}", self.context);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.context)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        let kind = match err.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::NotConnected => ErrorKind::Disconnected,
            std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::new(kind, err.to_string())
    }
}

/// `Result` with farmem's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_nonzero_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert_ne!(kind.code(), 0, "0 is FM_OK");
            assert!(seen.insert(kind.code()), "duplicate code {}", kind.code());
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(0), None);
        assert_eq!(ErrorKind::from_code(9999), None);
    }

    #[test]
    fn display_carries_kind_and_context() {
        let e = Error::new(
            ErrorKind::OutOfFarMemory,
            "server 127.0.0.1:1 is full (64 MiB)",
        )
        .with_context("writing object 7");
        assert_eq!(e.kind(), ErrorKind::OutOfFarMemory);
        assert_eq!(
            e.to_string(),
            "out of far memory: writing object 7: server 127.0.0.1:1 is full (64 MiB)"
        );
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let e: Error = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(e.kind(), ErrorKind::Disconnected);
        let e: Error = std::io::Error::from(std::io::ErrorKind::PermissionDenied).into();
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
