//! The runtime's error type: every failure a caller can meet, each with a message a user can act on.

use std::path::PathBuf;

use crate::format::FormatError;

/// Anything that can go wrong loading a model or answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be opened or read (the OS error is the
    /// [`source`](std::error::Error::source), not repeated in the message).
    #[error("cannot read model file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The model file is invalid (corrupt, truncated, wrong version, ...).
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The model file is intact but its contents are inconsistent.
    #[error("the model file is inconsistent: {0}")]
    Inconsistent(String),
    /// tract could not load or plan the stored graph.
    #[error("the model graph could not be loaded: {0}")]
    Graph(String),
    /// The operating system would not start the threads a request runs on (its error is the
    /// [`source`](std::error::Error::source)).
    #[error("cannot start {threads} threads for requests")]
    Threads {
        /// The threads asked for ([`crate::LoadOptions::threads`]).
        threads: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tokenizer failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// The text holds no mask.
    #[error("the text contains no mask: write {generic} (or the model's own {model}) where a word should be predicted")]
    NoMask {
        /// The generic mask spelling.
        generic: &'static str,
        /// The model's mask token.
        model: String,
    },
    /// The text holds more masks than a request can.
    #[error("the text has {found} masks; at most {max} are supported in one request")]
    TooManyMasks {
        /// Masks found.
        found: usize,
        /// The limit.
        max: usize,
    },
    /// The text is longer than the model's positions.
    #[error("the text is {tokens} tokens long (special tokens included); this model takes at most {max}: shorten it")]
    TooLong {
        /// Tokens the text became.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// `k` out of range.
    #[error("top-k must be between 1 and {max}, got {k}")]
    BadTopK {
        /// Requested.
        k: usize,
        /// The limit.
        max: usize,
    },
    /// The forward pass failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A request's options are out of range or cannot apply to this model.
    #[error("bad options: {0}")]
    BadOptions(String),
    /// A mask or candidate index that the last request did not produce.
    #[error("no such prediction: {0}")]
    NoSuchPrediction(String),
}

/// The runtime's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
