//! Standard output that a closed pipe cannot crash.
//!
//! `println!` panics when stdout is a pipe whose reader has gone (`bertling fill ... | head -1`).
//! The commands write through [`outln!`](crate::outln) and [`stdout`] instead: a write to a closed
//! pipe returns an error marked [`StdoutClosed`], and `main` ends quietly on it, with success, as
//! the writers `head` cuts short do. Other write errors (a full disk behind a redirect) stay
//! errors.
//!
//! ```
//! use std::io::Write;
//!
//! fn show(words: &[&str]) -> anyhow::Result<()> {
//!     for w in words {
//!         bertling_tools::outln!("{w}");
//!     }
//!     writeln!(bertling_tools::output::stdout(), "({} words)", words.len())?;
//!     Ok(())
//! }
//! show(&["coffee", "tea"]).unwrap();
//! ```

use std::io::{self, Write};

/// The reader of standard output has gone (a broken pipe): nothing more can be shown, and nothing
/// went wrong.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output, locked, whose broken-pipe errors carry [`StdoutClosed`].
pub struct Stdout(io::StdoutLock<'static>);

/// Standard output for writing with `write!`/`writeln!` (locked until dropped).
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

/// Any other failure to write standard output (a full disk behind `>`), said as such.
#[derive(Debug)]
struct CannotWrite(io::Error);

impl std::fmt::Display for CannotWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot write to standard output")
    }
}

impl std::error::Error for CannotWrite {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        io::Error::new(e.kind(), CannotWrite(e))
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Writes one line to standard output (what [`outln!`](crate::outln) expands to).
pub fn write_line(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = stdout();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether `e` (or an error it was caused by) is standard output's reader going away.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// `println!` that returns from the enclosing function with an error instead of panicking when
/// standard output cannot be written (see the [module](crate::output) docs).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))?
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_marked_and_other_errors_are_not() {
        let closed = anyhow::Error::new(mark(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_stdout_closed(&closed));
        assert!(is_stdout_closed(&closed.context("writing the answers")));
        let full = anyhow::Error::new(mark(io::Error::from_raw_os_error(28)));
        assert!(!is_stdout_closed(&full));
        let shown = format!("{full:#}");
        assert!(
            shown.starts_with("cannot write to standard output: "),
            "{shown}"
        );
        assert_eq!(shown.matches("os error 28").count(), 1, "{shown}");
        // A broken pipe elsewhere (a child process's stdin) is a real failure.
        let child = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_stdout_closed(&child));
    }
}
