//! The `bertling` command line's library: the ahead-of-time compiler and the commands that use
//! model files. The binary (`src/main.rs`) only parses arguments.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let compiled = bertling_tools::compile::compile("export/".as_ref(), "model.bertling".as_ref())?;
//! println!("{} bytes, {}", compiled.bytes, compiled.manifest.architecture);
//! # Ok(()) }
//! ```

#[macro_use]
pub mod output;

pub mod alloc_counter;
pub mod bench;
#[cfg(feature = "onnx")]
pub mod bench_onnx;
#[cfg(feature = "onnx")]
pub mod compile;
pub mod complete;
pub mod fill;
pub mod info;
pub mod inspect;
pub mod profile;
pub mod tokenize;

/// The parser of every command's `--threads`: 1 to 1024 (0 used to mean 1 in some commands).
pub fn thread_count() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024)
}
