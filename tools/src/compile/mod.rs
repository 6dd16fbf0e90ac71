//! `bertling compile`: a Hugging Face ONNX export in, one bertling model file out.

mod export;
mod onnx;
pub mod split;

use std::path::Path;

use anyhow::{Context, Result};
use bertling::format::{self, Manifest, OutputKind, Precision, SectionKind, SequencePlan};

pub use export::Export;
pub use onnx::{guarded, read_onnx};

/// What a compile produced, for the report.
#[derive(Debug)]
pub struct Compiled {
    pub manifest: Manifest,
    pub bytes: usize,
    pub check_max_abs_diff: f32,
}

/// Compiles `export_dir` into the model file `out`.
pub fn compile(export_dir: &Path, out: &Path) -> Result<Compiled> {
    let export = Export::read(export_dir)?;
    let graph = onnx::GraphBuild::from_export(&export)?;
    let manifest = Manifest {
        bertling_version: env!("CARGO_PKG_VERSION").to_string(),
        tract_version: bertling::graph::TRACT_VERSION.to_string(),
        architecture: export.config.architecture,
        precision: Precision::F32,
        vocab_size: export.config.vocab_size,
        max_tokens: export.config.max_tokens(),
        hidden_size: export.config.hidden_size,
        num_layers: export.config.num_layers,
        special_tokens: export.special_tokens.clone(),
        clean_up_tokenization_spaces: export.clean_up_tokenization_spaces,
        inputs: graph.inputs.clone(),
        output: match &graph.head {
            Some((hidden, _)) => OutputKind::MaskedHead { hidden: *hidden },
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
    let check_max_abs_diff = graph.check_against(&image, &export)?;
    let tmp = out.with_extension("bertling.partial");
    std::fs::write(&tmp, &image).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    let manifest = format::ModelFile::parse(&image)?.manifest;
    Ok(Compiled {
        manifest,
        bytes: image.len(),
        check_max_abs_diff,
    })
}
