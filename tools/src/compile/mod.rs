//! `bertling compile`: a Hugging Face ONNX export in, one bertling model file out.

mod dims;
mod export;
pub mod fuse;
pub mod lift;
mod mask;
mod onnx;
pub mod quantize;
pub mod split;

use std::path::Path;

use anyhow::{Context, Result};
use bertling::format::{self, Manifest, OutputKind, Precision, SectionKind, SequencePlan};

pub use export::Export;
pub use onnx::{cosine, guarded, read_onnx, Check, OnnxExport};
pub use quantize::{Activations, QuantizeReport};

/// How to compile.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Weight precision of the written file.
    pub precision: Precision,
    /// How int8 products quantize their activations.
    pub activations: Activations,
    /// The smallest cosine similarity between the int8 file's and the export's logits on the probe
    /// sentence the compiler accepts (a guard against a broken graph, not the accuracy figure).
    pub min_int8_cosine: f32,
}

impl Default for Options {
    /// int8: the smaller, faster file; `Precision::F32` keeps the export's numbers exactly.
    fn default() -> Options {
        Options {
            precision: Precision::Int8,
            activations: Activations::default(),
            min_int8_cosine: 0.99,
        }
    }
}

/// Parses a `--precision` value: `fp32` or `int8`.
pub fn parse_precision(s: &str) -> std::result::Result<Precision, String> {
    match s.to_ascii_lowercase().as_str() {
        "fp32" | "f32" => Ok(Precision::F32),
        "int8" | "i8" => Ok(Precision::Int8),
        _ => Err(format!("unknown precision '{s}': use fp32 or int8")),
    }
}

/// Parses an `--int8-activations` value: `rows12`, `grouped8` or `grouped7`.
pub fn parse_activations(s: &str) -> std::result::Result<Activations, String> {
    match s.to_ascii_lowercase().as_str() {
        "grouped7" => Ok(Activations::Grouped7),
        "grouped8" => Ok(Activations::Grouped8),
        "rows12" => Ok(Activations::Rows12),
        _ => Err(format!(
            "unknown int8 activations '{s}': use rows12, grouped8 or grouped7"
        )),
    }
}

/// What a compile produced, for the report.
#[derive(Debug)]
pub struct Compiled {
    pub manifest: Manifest,
    pub bytes: usize,
    /// The written file against the export, on a probe sentence.
    pub check: Check,
    /// What int8 quantization did (all zero for fp32).
    pub quantized: QuantizeReport,
}

/// Compiles `export_dir` into the model file `out` with the default [`Options`] (int8).
pub fn compile(export_dir: &Path, out: &Path) -> Result<Compiled> {
    compile_with(export_dir, out, &Options::default())
}

/// Compiles `export_dir` into the model file `out`.
pub fn compile_with(export_dir: &Path, out: &Path, options: &Options) -> Result<Compiled> {
    let export = Export::read(export_dir)?;
    let graph = onnx::GraphBuild::from_export(&export, options.precision, options.activations)?;
    let manifest = Manifest {
        bertling_version: env!("CARGO_PKG_VERSION").to_string(),
        tract_version: bertling::graph::TRACT_VERSION.to_string(),
        architecture: export.config.architecture,
        precision: options.precision,
        vocab_size: export.config.vocab_size,
        max_tokens: export.config.max_tokens(),
        hidden_size: export.config.hidden_size,
        num_layers: export.config.num_layers,
        special_tokens: export.special_tokens.clone(),
        clean_up_tokenization_spaces: export.clean_up_tokenization_spaces,
        inputs: graph.inputs.clone(),
        output: match &graph.head {
            Some((kind, _)) => *kind,
            None => OutputKind::AllPositionLogits,
        },
        tensors: graph.tensor_table.clone(),
        sequence: SequencePlan::Symbolic {
            symbol: onnx::SEQUENCE_SYMBOL.to_string(),
        },
        sections: vec![],
    };
    let mut sections = vec![
        (SectionKind::Tokenizer, export.tokenizer_json.as_slice()),
        (SectionKind::Graph, graph.nnef.as_slice()),
    ];
    if let Some((_, head)) = &graph.head {
        sections.push((SectionKind::Head, head.as_slice()));
    }
    sections.push((SectionKind::Tensors, graph.tensors.as_slice()));
    sections.push((SectionKind::Config, export.config.raw.as_slice()));
    let image = format::write(manifest, &sections)?;
    // Prove the file answers like the export before writing it anywhere.
    let check = graph.check_against(&image, &export, options.precision, options.min_int8_cosine)?;
    let tmp = out.with_extension("bertling.partial");
    std::fs::write(&tmp, &image).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    let manifest = format::ModelFile::parse(&image)?.manifest;
    Ok(Compiled {
        manifest,
        bytes: image.len(),
        check,
        quantized: graph.quantized,
    })
}
