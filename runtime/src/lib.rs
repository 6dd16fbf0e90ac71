//! # bertling
//!
//! Runs BERT-family masked language models (ALBERT, DistilBERT, BERT, RoBERTa) from one compact
//! model file that `bertling compile` makes from a Hugging Face ONNX export.
//!
//! ```no_run
//! # fn main() -> Result<(), bertling::Error> {
//! let mut model = bertling::Model::load("model.bertling")?;
//! let answer = model.fill_mask("If you don't [MASK] at the sign, you will get a ticket.", 5)?;
//! for c in &answer.masks[0].candidates {
//!     println!("{:.4} {}", c.score, model.token_str(c.token));
//! }
//! # Ok(()) }
//! ```
//!
//! A runnable version is `cargo run -p bertling --example fill -- MODEL "TEXT"`.
//!
//! Text completion (whole-word suggestions while typing) is [`Model::complete`], in [`complete`].
//!
//! Modules: [`format`](mod@format) (the file layout, a public contract), [`model`] (loading and requests),
//! [`footprint`] (the memory a loaded model holds and plans for a request),
//! [`memory`] (keeping a request's freed tensors for the next: bertling's binaries call
//! [`memory::retain_freed_memory`] at startup; library users choose for their process),
//! [`predictions`] (fixed-capacity results, softmax and top-k), [`text`] (mask spelling and
//! decoding clean-up), [`graph`] (the tract NNEF dialect), [`architecture`] (the families),
//! [`int8`] (the int8 operator and its kernels), and the rewrites the loader applies to the graphs
//! it reads: [`norm`] (each LayerNorm as one operator), [`gelu`] (the tanh GELU through tract's
//! vectorized `tanh` where tract has no vectorized GELU) and [`attention`] (scores, softmax and
//! weighted sum as one operator, on x86 with AVX2 and FMA).

pub mod architecture;
pub mod attention;
pub mod complete;
pub mod error;
pub mod footprint;
pub mod format;
pub mod gelu;
pub mod graph;
pub mod int8;
pub mod memory;
pub mod model;
pub mod norm;
pub mod predictions;
pub mod profile;
mod rewrite;
mod shared_constants;
pub mod text;
mod threads;

pub use architecture::Architecture;
pub use complete::{CompleteOptions, Completion, Suggestion, WordFilter, WordList};
pub use error::{Error, Result};
pub use model::{LoadOptions, Model};
pub use predictions::{Candidate, FillMask, MaskPrediction, MAX_MASKS, MAX_TOP_K};
