//! The ONNX side of the compiler: load with tract-onnx, fix the input shapes, declutter, write NNEF,
//! and check the result against the export.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use bertling::format::{InputKind, OutputKind, Precision, TensorBlob};
use bertling::graph::TensorStoreWriter;
use tract_onnx::prelude::*;

use super::quantize::{embedding_tables, quantize, QuantizeReport};
use super::Export;

/// The name of the symbolic sequence length in stored graphs.
pub const SEQUENCE_SYMBOL: &str = "S";

/// A sentence every supported tokenizer can encode; used to check the compiled graph.
/// Two masks: a head that mixed positions would disagree with the whole graph.
const PROBE_TEXT: &str = "The quick brown [MASK] jumps over the lazy dog, [MASK] twice.";

pub struct GraphBuild {
    pub inputs: Vec<InputKind>,
    /// The graph (the encoder when the head was cut off).
    pub nnef: Vec<u8>,
    /// The masked-LM head, cut to run at the mask positions only ([`OutputKind::MaskedHead`] or
    /// [`OutputKind::MaskedLayer`]).
    pub head: Option<(OutputKind, Vec<u8>)>,
    /// The tensor store both graphs use, and its table.
    pub tensors: Vec<u8>,
    pub tensor_table: Vec<TensorBlob>,
    /// What int8 quantization did (all zero for fp32).
    pub quantized: QuantizeReport,
    /// The decluttered model, kept to check the written file against, and its inputs.
    typed: TypedModel,
    reference_inputs: Vec<InputKind>,
}

/// How a compiled graph compares with the export on the probe sentence.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// Largest absolute difference of a mask-position logit.
    pub max_abs_diff: f32,
    /// Smallest cosine similarity of a mask position's logits.
    pub min_cosine: f32,
}

/// An export's `model.onnx` as tract-onnx reads it.
pub struct OnnxExport {
    /// The graph, with the single output kept.
    pub model: InferenceModel,
    /// What each input is, in the graph's order.
    pub inputs: Vec<InputKind>,
    /// What to say if the compile fails: the export is not plain fp32 ([`reduced_precision`]) or
    /// has a fixed sequence length ([`fixed_length`]).
    pub failure_note: Option<String>,
}

/// Reads an export's `model.onnx` with tract-onnx: its inputs (by their conventional names) and,
/// when it has several outputs, only the one named `logits`.
pub fn read_onnx(path: &Path) -> Result<OnnxExport> {
    let onnx = tract_onnx::onnx().with_ignore_value_info(true);
    let proto = guarded("model.onnx is not a readable ONNX model", || {
        onnx.proto_model_for_path(path)
    })?;
    if let Some(refusal) = foreign_operators(&proto) {
        bail!(refusal);
    }
    let failure_note = reduced_precision(&proto).or_else(|| fixed_length(&proto));
    let mut model = guarded("model.onnx is not a readable ONNX model", || {
        // As `model_for_path`: external tensor data is looked up beside the file.
        let dir = path.parent().and_then(|d| d.to_str());
        let parsed = onnx.parse(&proto, dir)?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(anyhow!("unresolved inputs {:?}", parsed.unresolved_inputs));
        }
        Ok(parsed.model)
    })?;
    let mut inputs = vec![];
    for outlet in model.input_outlets()?.to_vec() {
        let name = model.node(outlet.node).name.clone();
        let kind = InputKind::from_onnx_name(&name).with_context(|| {
            format!("model.onnx has an input '{name}'; bertling feeds input_ids, attention_mask and token_type_ids only")
        })?;
        inputs.push(kind);
    }
    if !inputs.contains(&InputKind::InputIds) {
        bail!("model.onnx has no input_ids input");
    }
    let outputs = model.output_outlets()?.to_vec();
    if outputs.len() != 1 {
        let logits = outputs
            .iter()
            .find(|o| model.node(o.node).name == "logits")
            .copied()
            .context("model.onnx has several outputs and none is named logits")?;
        model.select_output_outlets(&[logits])?;
    }

    Ok(OnnxExport {
        model,
        inputs,
        failure_note,
    })
}

/// onnxruntime's own operators (domain `com.microsoft`, what its transformer optimizer writes:
/// `optimum-cli export onnx --optimize O2` and up) that tract reads with onnxruntime's meaning:
/// tract expands them into its own operators, and the tests compare such exports' answers with
/// onnxruntime's. tract looks operators up by name alone, so any other operator of a foreign
/// domain (`Attention`, `EmbedLayerNormalization`, `FusedMatMul`, ...) is refused before tract
/// sees it: an ONNX operator of the same name would be read with another meaning, or fail obscurely.
const READ_CONTRIB_OPS: &[&str] = &["SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu"];

/// Why an export cannot be read, if it uses operators of a domain other than ONNX's beyond
/// [`READ_CONTRIB_OPS`]: the operators, and what to give instead.
pub fn foreign_operators(proto: &tract_onnx::pb::ModelProto) -> Option<String> {
    let graph = proto.graph.as_ref()?;
    let mut foreign: Vec<String> = vec![];
    for node in &graph.node {
        let domain = node.domain.as_str();
        let standard = domain.is_empty() || domain == "ai.onnx";
        let read = domain == "com.microsoft" && READ_CONTRIB_OPS.contains(&node.op_type.as_str());
        let name = format!("{domain}:{}", node.op_type);
        if !standard && !read && !foreign.contains(&name) {
            foreign.push(name);
        }
    }
    if foreign.is_empty() {
        return None;
    }
    Some(format!(
        "model.onnx uses operators bertling cannot read ({}), fused by onnxruntime's transformer \
         optimizer or from a custom domain: give the plain export (optimum-cli export onnx --task \
         fill-mask ..., without --optimize); bertling compile optimizes it itself",
        foreign.join(", ")
    ))
}

/// Operators of an export that is already quantized (onnxruntime's `quantize_dynamic` or
/// `quantize_static`, optimum's `onnxruntime quantize`).
const QUANTIZED_OPS: &[&str] = &[
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
    "QLinearMatMul",
    "ConvInteger",
    "QLinearConv",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "QAttention",
    "QEmbedLayerNormalization",
];

/// ONNX `TensorProto.DataType` codes of half-precision floats (FLOAT16, BFLOAT16).
const HALF_TYPES: &[i32] = &[10, 16];

/// Whether an export is already quantized or in half precision, and if so what to tell a user
/// whose compile of it fails. Such exports are not refused: tract folds weights stored in int8
/// behind a `DequantizeLinear`, or in fp16 behind a `Cast`, into fp32 constants, and those compile
/// (and are quantized again); graphs that compute in int8 or fp16 do not.
pub fn reduced_precision(proto: &tract_onnx::pb::ModelProto) -> Option<String> {
    let graph = proto.graph.as_ref()?;
    let what = if let Some(node) = graph
        .node
        .iter()
        .find(|n| QUANTIZED_OPS.contains(&n.op_type.as_str()))
    {
        format!("already quantized (it has a {} node)", node.op_type)
    } else if graph
        .initializer
        .iter()
        .any(|t| HALF_TYPES.contains(&t.data_type))
    {
        "in half precision (fp16/bf16 weights)".to_string()
    } else {
        return None;
    };
    Some(format!(
        "model.onnx is {what}: give bertling the fp32 export (optimum-cli export onnx --task \
         fill-mask ..., without --fp16, --dtype or a quantization step); `bertling compile` \
         quantizes it itself (int8 by default)"
    ))
}

/// Whether `input_ids` has a fixed length (an export made without a dynamic sequence axis), and
/// if so what to tell a user whose compile of it fails. Such exports are not refused outright: a
/// graph whose shape arithmetic does not depend on that length would still compile.
pub fn fixed_length(proto: &tract_onnx::pb::ModelProto) -> Option<String> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as Type;
    let input = proto
        .graph
        .as_ref()?
        .input
        .iter()
        .find(|i| i.name == "input_ids")?;
    let Some(Type::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let dims = &t.shape.as_ref()?.dim;
    let Some(Value::DimValue(len)) = dims.get(1)?.value.as_ref() else {
        return None;
    };
    Some(format!(
        "model.onnx takes input_ids of a fixed length ({len} tokens): bertling runs each text at its \
         own length, so give it an export with a dynamic sequence axis (optimum-cli export onnx \
         --task fill-mask ... makes one; with torch.onnx.export, dynamic_axes or dynamic_shapes)"
    ))
}

/// tract may panic on graphs it does not expect; a user's file must get an error instead.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| anyhow!("{what}: {e:#}")),
        Err(_) => bail!(
            "{what}: tract failed on this graph (internal panic); please report it with the export"
        ),
    }
}

impl GraphBuild {
    pub fn from_export(
        export: &Export,
        precision: Precision,
        activations: super::Activations,
    ) -> Result<GraphBuild> {
        let onnx = read_onnx(&export.onnx_path)?;
        let note = onnx.failure_note.clone();
        Self::build(export, precision, activations, onnx).map_err(|e| match note {
            Some(note) => e.context(note),
            None => e,
        })
    }

    fn build(
        export: &Export,
        precision: Precision,
        activations: super::Activations,
        onnx: OnnxExport,
    ) -> Result<GraphBuild> {
        let OnnxExport {
            mut model, inputs, ..
        } = onnx;
        let s = model.symbols.sym(SEQUENCE_SYMBOL);
        for ix in 0..inputs.len() {
            let fact = InferenceFact::dt_shape(i64::datum_type(), tvec![1.to_dim(), s.to_dim()]);
            model.set_input_fact(ix, fact)?;
        }
        let mut typed = guarded("tract could not type the ONNX graph", || {
            model.into_typed()?.into_decluttered()
        })?;
        super::dims::count_in_i64(&mut typed).context("typing sums of dimensions")?;
        // Decluttering can leave an output fact wider than what its node computes (PyTorch's
        // dynamo exports: an attention mask typed [1, 1, S, S] that computes [1, 1, 1, S]); tract's
        // debug builds check facts when they run a graph, and our passes read shapes.
        guarded("tract could not type the ONNX graph", || {
            typed.refresh_output_facts()
        })?;
        // The check at the end runs the graph as decluttered, before our own rewrites.
        let reference = typed.clone();
        let reference_inputs = inputs.clone();
        let mut inputs = inputs;
        match super::mask::fold_attention_mask(&mut typed, &mut inputs) {
            Ok(fold) => tracing::debug!("attention mask: {fold:?}"),
            Err(e) => {
                tracing::warn!("the attention mask stays an input: {e:#}");
                typed = reference.clone();
                inputs = reference_inputs.clone();
            }
        }
        let gelus = super::fuse::fuse_gelu_tanh(&mut typed).context("fusing GELU")?;
        if gelus > 0 {
            tracing::debug!("{gelus} tanh GELUs fused");
        }
        let scales = super::fuse::scale_queries(&mut typed).context("moving attention scales")?;
        if scales > 0 {
            tracing::debug!("{scales} attention scales moved from the scores to the queries");
        }
        let out_fact = typed.output_fact(0)?.clone();
        let vocab = export.config.vocab_size as i64;
        let shape_ok = out_fact.datum_type == f32::datum_type()
            && out_fact.rank() == 3
            && out_fact.shape[0] == 1.to_dim()
            && out_fact.shape[1] == s.to_dim()
            && out_fact.shape[2] == vocab.to_dim();
        if !shape_ok {
            bail!(
                "model.onnx's output is {out_fact:?}, not f32 logits [batch, sequence, {vocab}]: \
                 bertling needs a masked-LM export (optimum-cli export onnx --task fill-mask ...)"
            );
        }
        let mut store = TensorStoreWriter::default();
        let mut quantized = QuantizeReport::default();
        // Looked up in the whole graph: after the split, the word embeddings are in the encoder
        // and the tied projection in the head.
        let tables = match precision {
            Precision::Int8 => embedding_tables(&typed).context("finding the embedding tables")?,
            Precision::F32 => Default::default(),
        };
        let mut write = |m: &TypedModel, activations| -> Result<Vec<u8>> {
            let m = match precision {
                Precision::F32 => m.clone(),
                Precision::Int8 => {
                    let (q, report) = quantize(m, &tables, activations)
                        .context("quantizing the graph to int8")?;
                    quantized += report;
                    q
                }
            };
            guarded("tract could not serialize the graph", || {
                store.write_graph(&m)
            })
        };
        // Best first: the last layer at the masks too (lift), else the position-wise head (split),
        // else the whole graph at every position.
        let split = match super::lift::lift(&typed, &s) {
            Ok(split) => Ok((split, true)),
            Err(e) => {
                tracing::debug!("the last layer stays at every position: {e:#}");
                super::split::split(&typed, &s).map(|split| (split, false))
            }
        };
        let (nnef, head) = match split {
            Ok((split, layer)) => {
                let hidden = split
                    .encoder
                    .output_fact(0)?
                    .shape
                    .last()
                    .and_then(|d| d.to_i64().ok());
                let hidden = hidden.context("the encoder's hidden size is not a number")? as u32;
                let kind = if layer {
                    OutputKind::MaskedLayer { hidden }
                } else {
                    OutputKind::MaskedHead { hidden }
                };
                // The head runs at the masks (the last layer's keys and values aside), so its
                // products are a small share of the work but all of them feed the answer: they keep
                // the accurate 12-bit codes whatever the encoder uses.
                let encoder = write(&split.encoder, activations)?;
                let head = write(&split.head, super::Activations::Rows12)?;
                (encoder, Some((kind, head)))
            }
            Err(e) => {
                tracing::warn!("the vocabulary projection will run at every position: {e:#}");
                (write(&typed, activations)?, None)
            }
        };
        let (tensors, tensor_table) = store.finish();
        Ok(GraphBuild {
            inputs,
            nnef,
            head,
            tensors,
            tensor_table,
            quantized,
            typed: reference,
            reference_inputs,
        })
    }

    /// Runs the probe sentence through the decluttered ONNX graph and through a model loaded from
    /// the file image; fails unless their mask-position logits agree: for fp32 within 1e-4 of
    /// their magnitude (the largest |logit| at the masks, at least 1), in
    /// direction (cosine similarity >= `min_cosine`, by default 0.99: a guard against a broken
    /// graph, not the accuracy figure) for int8.
    pub fn check_against(
        &self,
        image: &[u8],
        export: &Export,
        precision: Precision,
        min_cosine: f32,
    ) -> Result<Check> {
        let mut loaded =
            bertling::Model::from_bytes(image).context("the compiled file does not load")?;
        let answer = loaded
            .fill_mask(PROBE_TEXT, 1)
            .context("the compiled model cannot answer a probe sentence")?;
        let ids = loaded.last_input_ids().to_vec();
        let reference = guarded("the export cannot run the probe sentence", || {
            let plan = self.typed.clone().into_optimized()?.into_runnable()?;
            let enc = export.tokenizer.encode(
                PROBE_TEXT.replace("[MASK]", &export.special_tokens.mask.text),
                true,
            );
            let type_ids = enc
                .map(|e| e.get_type_ids().to_vec())
                .unwrap_or_else(|_| vec![0; ids.len()]);
            let inputs = bertling::graph::input_tensors(&self.reference_inputs, &ids, &type_ids)?;
            Ok(plan.run(inputs)?.remove(0).into_tensor())
        })?;
        let reference = reference.try_as_plain_ram()?.as_slice::<f32>()?;
        let vocab = export.config.vocab_size as usize;
        let mut max = 0f32;
        let mut scale = 1f32;
        let mut min_cos = 1f32;
        for (i, mask) in answer.masks.iter().enumerate() {
            let p = mask.position as usize;
            let want = &reference[p * vocab..(p + 1) * vocab];
            let got = loaded.last_logits(i).context("missing logits")?;
            if got.iter().any(|x| !x.is_finite()) {
                bail!("the compiled graph produces non-finite logits on a probe sentence");
            }
            for (a, b) in want.iter().zip(got) {
                max = max.max((a - b).abs());
                scale = scale.max(a.abs());
            }
            min_cos = min_cos.min(cosine(want, got));
        }
        let ok = match precision {
            // f32 rounding grows with the logits (a fused attention or norm sums in another
            // order): 1e-4 of their magnitude, as the absolute 1e-4 it is for logits within +-1.
            Precision::F32 => max <= 1e-4 * scale,
            Precision::Int8 => min_cos >= min_cosine,
        };
        if !ok {
            bail!(
                "the compiled {precision} graph disagrees with the export: max abs logit \
                 difference {max}, cosine similarity {min_cos}{}",
                if precision == Precision::Int8 {
                    " (this model does not quantize well: compile it with --precision fp32, or \
                     --int8-activations rows12 if it used grouped8 or grouped7)"
                } else {
                    ""
                }
            );
        }
        Ok(Check {
            max_abs_diff: max,
            min_cosine: min_cos,
        })
    }
}

/// Cosine similarity of two vectors, computed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return if aa == bb { 1.0 } else { 0.0 };
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}
