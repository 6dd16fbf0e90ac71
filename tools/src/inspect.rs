//! `bertling inspect`: what a model file holds.

use std::path::Path;

use anyhow::{Context, Result};
use bertling::footprint::Footprint;
use bertling::format::ModelFile;

pub fn run(path: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = ModelFile::parse(&bytes)?;
    let m = &file.manifest;
    // The planned memory needs the plans: the model is loaded (checksums, graph) as `fill` would.
    let memory = || -> Result<Vec<Footprint>> {
        let model =
            bertling::Model::from_bytes(&bytes).context("cannot load the model to plan it")?;
        let max = m.max_tokens as usize;
        let mut lengths: Vec<usize> = [16, 128, max].into_iter().filter(|&t| t <= max).collect();
        lengths.dedup();
        Ok(lengths
            .iter()
            .map(|&t| model.footprint(t, bertling::MAX_MASKS))
            .collect::<Result<Vec<Footprint>, _>>()?)
    };
    if json {
        let memory = memory()?;
        let sections: Vec<_> = m
            .sections
            .iter()
            .map(|s| serde_json::json!({"kind": format!("{:?}", s.kind), "offset": s.offset, "bytes": s.len, "crc32": s.crc32}))
            .collect();
        let v = serde_json::json!({
            "file_bytes": bytes.len(),
            "format_version": file.version,
            "bertling_version": m.bertling_version,
            "tract_version": m.tract_version,
            "architecture": m.architecture.model_type(),
            "precision": m.precision.to_string(),
            "vocab_size": m.vocab_size,
            "max_tokens": m.max_tokens,
            "hidden_size": m.hidden_size,
            "num_layers": m.num_layers,
            "mask_token": {"id": m.special_tokens.mask.id, "text": m.special_tokens.mask.text},
            "inputs": m.inputs.iter().map(|k| k.onnx_name()).collect::<Vec<_>>(),
            "output": format!("{:?}", m.output),
            "sequence": format!("{:?}", m.sequence),
            "clean_up_tokenization_spaces": m.clean_up_tokenization_spaces,
            "sections": sections,
            "planned_memory": memory.iter().map(|f| serde_json::json!({
                "tokens": f.tokens, "masks": f.masks, "weights": f.weights, "activations": f.activations,
                "scratch": f.scratch, "buffers": f.buffers, "peak": f.total(),
            })).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "file          {} ({} bytes, format version {})",
        path.display(),
        bytes.len(),
        file.version
    );
    outln!(
        "made by       bertling {} with tract {}",
        m.bertling_version,
        m.tract_version
    );
    outln!(
        "architecture  {} ({} layers, hidden {})",
        m.architecture,
        m.num_layers,
        m.hidden_size
    );
    outln!("precision     {}", m.precision);
    outln!(
        "vocabulary    {} (mask {} = id {})",
        m.vocab_size,
        m.special_tokens.mask.text,
        m.special_tokens.mask.id
    );
    outln!("max tokens    {}", m.max_tokens);
    outln!(
        "inputs        {}",
        m.inputs
            .iter()
            .map(|k| k.onnx_name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!("output        {:?}; sequence {:?}", m.output, m.sequence);
    outln!("sections");
    for s in &m.sections {
        outln!(
            "  {:<10} {:>12} bytes at {:>10}  crc32 {:08x}",
            format!("{:?}", s.kind),
            s.len,
            s.offset,
            s.crc32
        );
    }
    // Printed after the manifest: a file whose graph does not load still shows what it holds.
    let memory = memory()?;
    let mb = |b: u64| b as f64 / 1e6;
    outln!(
        "planned memory (MB; weights held once loaded, then per request of {} masks: tensors \
         alive at once, int8 scratch, request buffers)",
        bertling::MAX_MASKS
    );
    outln!(
        "  {:>6} {:>9} {:>12} {:>8} {:>8} {:>8}",
        "tokens",
        "weights",
        "activations",
        "scratch",
        "buffers",
        "peak"
    );
    for f in &memory {
        outln!(
            "  {:>6} {:>9.1} {:>12.1} {:>8.1} {:>8.1} {:>8.1}",
            f.tokens,
            mb(f.weights),
            mb(f.activations),
            mb(f.scratch),
            mb(f.buffers),
            mb(f.total())
        );
    }
    Ok(())
}
