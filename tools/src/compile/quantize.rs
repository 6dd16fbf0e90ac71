//! int8 quantization, done once at compile time.
//!
//! Every matrix product with a constant weight (`x · W`, an [`EinSum`] with one constant input)
//! becomes one [`Int8Linear`] node (see `bertling::int8`): the weight is quantized here, per output
//! channel and group of 64 inputs (`s_W = max |W| / 127`, codes `round(W / s_W)`), and stored as i8
//! codes pre-packed in the panel layout the kernels read (`bertling::int8::packed`) plus f16 scales;
//! at run time `x` is quantized per row to 12-bit codes, or per row and group of 64 inputs to 8- or
//! 7-bit codes with a zero point ([`Activations`], `bertling::int8::a8`, `bertling::int8::a7`), the
//! code products are summed exactly in i32 and scaled back. The weights are symmetric (zero point
//! 0), so nothing per request depends on the weights alone (the activations' zero points and
//! offsets are taken back through column sums the loader computes once).
//!
//! Embedding tables read with a `Gather` (word embeddings) are stored as i8 rows with one scale per
//! row: a lookup gathers the i8 rows and their scales and multiplies. A tied output projection's
//! weight is the embedding table itself (`[vocab, hidden]`, its output channels the table's rows):
//! that product keeps the row-major layout, so its codes are the same bytes as the i8 word
//! embeddings and the file's tensor store keeps one copy. It runs only at the masked positions, a
//! few rows, where the layout matters little.
//!
//! Products of two activations (attention scores, attention-weighted values), LayerNorm, softmax,
//! GELU, biases and small embeddings stay in f32.

use anyhow::{Context, Result};
use bertling::int8::wide::{act_max, ACT_MAX_DEFAULT};
use bertling::int8::{a7, a8, packed, Int8Linear, Layout};
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::Gather;
use tract_onnx::tract_core::ops::cast::cast;
use tract_onnx::tract_core::ops::change_axes::{AxisOp, InOut};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;

/// The largest magnitude of a symmetric i8 code (-127..=127; -128 is never used, so negating a code
/// cannot overflow).
const QMAX: f32 = 127.0;

/// Smallest row magnitude considered non-zero: an all-zero row gets scale 0 and codes 0, and the
/// activation scale's reciprocal stays finite.
const TINY: f32 = 1e-30;

/// Embedding tables with fewer rows than this stay f32 (token type tables: a few KB).
const MIN_EMBEDDING_ROWS: usize = 64;

/// How an int8 product's activations are quantized at run time (its weights are the same either
/// way: panels with a scale per channel and 64 inputs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Activations {
    /// 12-bit codes with one scale per row: the most accurate on a real pretrained model
    /// (AntiBERTy: top-1 agreement with fp32 99.40%, BENCHMARKS.md "int8 accuracy"); the default
    /// before format 7, and what the head's products always use.
    Rows12,
    /// 7-bit codes with a scale and a zero point per row and group of 64 inputs
    /// (`bertling::int8::a7`, asymmetric since format 6; the compiler asks for them in the encoder
    /// graph only, the head's products keep [`Activations::Rows12`]): ~1.3x the throughput of the
    /// products on a Zen 3 (one `sdot` instead of two on a Pi 5), but ~0.8x on a first-generation
    /// Zen, at a measured cost in accuracy (BENCHMARKS.md) a user must choose.
    Grouped7,
    /// 8-bit codes with a scale and a zero point per row and group of 64 inputs
    /// (`bertling::int8::a8`, format 7; the head keeps [`Activations::Rows12`] as with
    /// `Grouped7`): within the accuracy bar on AntiBERTy, and the codes integer dot-product
    /// instructions take whole (one `vpdpbusd` per 32 multiply-adds with AVX-VNNI or
    /// AVX512-VNNI, one `sdot` per 16 on a Pi 5, where 12-bit codes need two); on AVX2 alone they
    /// are widened to i16 and run at the 12-bit rate (BENCHMARKS.md). The default.
    #[default]
    Grouped8,
}

/// What the quantizer did to one graph.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QuantizeReport {
    /// Matrix products turned into i8 x i8 -> i32 ones.
    pub matmuls: usize,
    /// Matrix products with a constant weight left in f32 (a layout this pass does not handle).
    pub matmuls_kept: usize,
    /// Embedding tables stored as i8 rows.
    pub embeddings: usize,
}

impl std::ops::AddAssign for QuantizeReport {
    fn add_assign(&mut self, o: Self) {
        self.matmuls += o.matmuls;
        self.matmuls_kept += o.matmuls_kept;
        self.embeddings += o.embeddings;
    }
}

/// A weight quantized per output channel: codes `[N, K]` and scales `[N]`.
pub struct QuantizedWeight {
    pub codes: Tensor,
    pub scales: Vec<f32>,
}

/// Quantizes the rows of a `[N, K]` matrix given as a closure over `(n, k)`, symmetric, per row.
pub fn quantize_rows(n: usize, k: usize, at: impl Fn(usize, usize) -> f32) -> QuantizedWeight {
    let mut codes = vec![0i8; n * k];
    let mut scales = vec![0f32; n];
    for row in 0..n {
        let amax = (0..k).map(|c| at(row, c).abs()).fold(0f32, f32::max);
        let scale = amax / QMAX;
        scales[row] = scale;
        if amax > TINY {
            let inv = QMAX / amax;
            for c in 0..k {
                codes[row * k + c] = (at(row, c) * inv).round().clamp(-QMAX, QMAX) as i8;
            }
        }
    }
    let codes = Tensor::from_shape(&[n, k], &codes).expect("shape matches the data");
    QuantizedWeight { codes, scales }
}

/// Quantizes every constant-weight matrix product and every large embedding lookup of `model`.
/// `tables` are the [`embedding_tables`] of the whole model `model` is a part of (the encoder
/// holds the lookup, the head the tied projection).
pub fn quantize(
    model: &TypedModel,
    tables: &Tables,
    activations: Activations,
) -> Result<(TypedModel, QuantizeReport)> {
    let mut model = model.clone();
    let mut report = QuantizeReport::default();
    let order = model.eval_order()?;
    for id in order {
        let node = model.node(id);
        if let Some(op) = node.op_as::<EinSum>() {
            if op.q_params.is_some() || node.inputs.len() != 2 {
                continue;
            }
            let op = op.clone();
            match einsum_patch(&model, id, &op, tables, activations)? {
                Some(patch) => {
                    patch.apply(&mut model)?;
                    report.matmuls += 1;
                }
                None => {
                    let facts = model.node_input_facts(id)?;
                    if facts.iter().any(|f| f.konst.is_some()) {
                        tracing::debug!(
                            "matmul {} kept in f32: {} {:?}",
                            model.node(id).name,
                            op.axes,
                            facts.iter().map(|f| f.without_value()).collect::<Vec<_>>()
                        );
                        report.matmuls_kept += 1;
                    }
                }
            }
        } else if let Some(op) = node.op_as::<Gather>() {
            let op = op.clone();
            if let Some(patch) = gather_patch(&model, id, &op)? {
                patch.apply(&mut model)?;
                report.embeddings += 1;
            }
        }
    }
    let model = model
        .into_compact()
        .context("compacting the quantized graph")?;
    Ok((model, report))
}

/// A fingerprint of an f32 matrix: its shape and a hash of its bits.
fn fingerprint(rows: usize, cols: usize, data: &[f32]) -> (usize, usize, u64) {
    let mut h = DefaultHasher::new();
    for v in data {
        v.to_bits().hash(&mut h);
    }
    (rows, cols, h.finish())
}

/// Fingerprints (shape, hash of the f32 bits) of embedding tables.
pub type Tables = HashSet<(usize, usize, u64)>;

/// Fingerprints of the tables that [`gather_patch`] will store as i8 rows: a matrix product whose
/// `[N, K]` weight is one of them is a tied projection.
pub fn embedding_tables(model: &TypedModel) -> Result<Tables> {
    let mut out = HashSet::new();
    for node in &model.nodes {
        let Some(op) = node.op_as::<Gather>() else {
            continue;
        };
        let Some(table) = model.outlet_fact(node.inputs[0])?.konst.clone() else {
            continue;
        };
        if is_quantized_table(op, &table) {
            let view = table.to_plain_array_view::<f32>()?;
            let view = view.as_standard_layout();
            let flat = view.as_slice().context("standard layout is contiguous")?;
            out.insert(fingerprint(table.shape()[0], table.shape()[1], flat));
        }
    }
    Ok(out)
}

/// Whether [`gather_patch`] stores this lookup's table as i8 rows.
fn is_quantized_table(op: &Gather, table: &Tensor) -> bool {
    op.axis == 0
        && op.output_type.is_none()
        && table.rank() == 2
        && table.datum_type() == f32::datum_type()
        && table.shape()[0] >= MIN_EMBEDDING_ROWS
}

/// Rewrites `x · W` (one f32 input constant) as an i8 product; `None` when the node is not of the
/// form this pass handles: the weight's axes are one output-channel axis `n` (in the output, not in
/// `x`) and contracted axes (in `x` once, not in the output); `x`'s other axes are rows (in the
/// output, in the same order) or of size 1.
fn einsum_patch(
    model: &TypedModel,
    id: usize,
    op: &EinSum,
    tables: &Tables,
    activations: Activations,
) -> Result<Option<TypedModelPatch>> {
    let node = model.node(id);
    let facts = model.node_input_facts(id)?;
    if op.operating_dt != f32::datum_type()
        || facts.iter().any(|f| f.datum_type != f32::datum_type())
    {
        return Ok(None);
    }
    let (w_slot, x_slot) = match (facts[0].konst.is_some(), facts[1].konst.is_some()) {
        (false, true) => (1, 0),
        (true, false) => (0, 1),
        _ => return Ok(None),
    };
    let w = facts[w_slot].konst.clone().unwrap();
    let x_shape = &facts[x_slot].shape;
    let axes = &op.axes;
    let mut contracted = vec![]; // (label, position in x, position in w)
    let mut n_axis = None; // (label, position in w, position in the output)
    let mut dropped = vec![]; // positions in x of size-1 axes absent from the output
    for axis in axes.iter_all_axes() {
        let (in_x, in_w, in_out) = (&axis.inputs[x_slot], &axis.inputs[w_slot], &axis.outputs[0]);
        match (in_x.len(), in_w.len(), in_out.len()) {
            (1, 1, 0) => contracted.push((axis.repr, in_x[0], in_w[0])),
            (0, 1, 1) if n_axis.is_none() => n_axis = Some((axis.repr, in_w[0], in_out[0])),
            (1, 0, 0) if x_shape[in_x[0]].is_one() => dropped.push(in_x[0]),
            (1, 0, 1) | (0, 0, 1) => (), // a row axis of x; an output-only axis of size 1
            _ => return Ok(None),
        }
    }
    let Some((n_label, n_in_w, n_in_out)) = n_axis else {
        return Ok(None);
    };
    if contracted.is_empty() || contracted.len() + 1 != w.rank() {
        return Ok(None);
    }
    contracted.sort_by_key(|c| c.1); // x's order
    let x_labels: String = axes.axes(InOut::In(x_slot)).map(|a| a.repr).collect();
    let out_labels: String = axes.axes(InOut::Out(0)).map(|a| a.repr).collect();
    // x's row axes, in x's order, must keep their order in the output.
    let rows: Vec<char> = x_labels
        .chars()
        .enumerate()
        .filter(|(p, _)| !dropped.contains(p) && !contracted.iter().any(|c| c.1 == *p))
        .map(|(_, c)| c)
        .collect();
    let rows_in_out: Vec<char> = out_labels.chars().filter(|c| rows.contains(c)).collect();
    if rows != rows_in_out {
        return Ok(None);
    }

    // The weight as [n, contracted axes in x's order], quantized per n.
    let mut perm = vec![n_in_w];
    perm.extend(contracted.iter().map(|c| c.2));
    let wv = w.to_plain_array_view::<f32>()?.permuted_axes(perm.clone());
    let wv = wv.as_standard_layout();
    let n = w.shape()[n_in_w];
    let k = w.len() / n.max(1);
    let flat = wv.as_slice().context("standard layout is contiguous")?;
    // The fused int8 operator wants x's contracted axes last, in the weight's order, and n last in
    // the output.
    let xr = x_labels.len();
    let kc = contracted.len();
    let trailing = contracted
        .iter()
        .enumerate()
        .all(|(i, c)| c.1 == xr - kc + i);
    if !trailing || n_in_out + 1 != out_labels.len() {
        return Ok(None);
    }
    // [n, k] with k the contracted axes flattened in x's order. A tied projection keeps the
    // embedding table's row-major bytes; everything else gets the panel layout.
    let tied = tables.contains(&fingerprint(n, k, flat));
    // Codes and scales: a tied projection keeps the embedding table's row-major bytes and one
    // scale per channel; everything else gets panels with a scale per channel and 64 inputs,
    // stored as f16 (the operator turns them into f32 when the loader declutters the graph).
    let (codes, scales, layout) = if tied {
        let q = quantize_rows(n, k, |r, c| flat[r * k + c]);
        let codes = q.codes;
        let scales = Tensor::from_shape(&[n], &q.scales)?;
        (codes, scales, Layout::Rows)
    } else {
        let (panels, scales) = packed::quantize_weight(flat, n, k, |s| f16::from_f32(s).to_f32());
        let shape = [
            packed::panels(n),
            packed::padded_k(k) / packed::GROUP,
            packed::PANEL * packed::GROUP,
        ];
        let codes = Tensor::from_shape(&shape, &panels)?;
        let scales: Vec<f16> = scales.iter().map(|&s| f16::from_f32(s)).collect();
        let shape = [packed::panels(n), packed::scale_groups(k), packed::PANEL];
        (codes, Tensor::from_shape(&shape, &scales)?, Layout::Panels)
    };
    let grouped = layout == Layout::Panels && activations != Activations::Rows12;
    let op = Int8Linear {
        layout,
        act_max: match activations {
            Activations::Grouped7 if grouped => a7::ACT_MAX,
            Activations::Grouped8 if grouped => a8::ACT_MAX,
            _ => act_max(k, ACT_MAX_DEFAULT),
        },
        channels: if tied { 0 } else { n },
        act_group: if grouped { a7::ACT_GROUP } else { 0 },
        asymmetric: grouped,
        bias: None,
    };
    let name = &node.name;
    let mut patch = TypedModelPatch::new(format!("quantize {name}"));
    let mut x = patch.tap_model(model, node.inputs[x_slot])?;
    if kc > 1 {
        let from: TVec<TDim> = x_shape[xr - kc..].iter().cloned().collect();
        x = patch.wire_node(
            format!("{name}.merge_k"),
            AxisOp::Reshape(xr - kc, from, tvec![k.to_dim()]),
            &[x],
        )?[0];
    }
    let wq = patch.add_const(format!("{name}.weight_i8"), codes)?;
    let ws = patch.add_const(format!("{name}.weight_scale"), scales)?;
    let mut y = patch.wire_node(format!("{name}.int8"), op, &[x, wq, ws])?[0];
    // [x's leading axes..., n] -> the output's layout: drop x's size-1 axes the output lacks, add
    // the output's own size-1 axes.
    let mut drop = dropped.clone();
    drop.sort_unstable_by(|a, b| b.cmp(a));
    for (i, p) in drop.into_iter().enumerate() {
        y = patch.wire_node(format!("{name}.rm{i}"), AxisOp::Rm(p), &[y])?[0];
    }
    for (p, c) in out_labels.chars().enumerate() {
        if c != n_label && !rows.contains(&c) {
            y = patch.wire_node(format!("{name}.add{p}"), AxisOp::Add(p), &[y])?[0];
        }
    }
    let want = model.outlet_fact(OutletId::new(id, 0))?;
    let got = patch.outlet_fact(y)?;
    if got.shape != want.shape {
        return Ok(None);
    }
    patch.shunt_outside(model, OutletId::new(id, 0), y)?;
    Ok(Some(patch))
}

/// Rewrites a lookup in a large constant f32 table `[rows, width]` as a lookup in its i8 rows times
/// the rows' scales; `None` when the node is not of that form.
fn gather_patch(model: &TypedModel, id: usize, op: &Gather) -> Result<Option<TypedModelPatch>> {
    let node = model.node(id);
    let facts = model.node_input_facts(id)?;
    let Some(table) = facts[0].konst.clone() else {
        return Ok(None);
    };
    if !is_quantized_table(op, &table) {
        return Ok(None);
    }
    let (rows, width) = (table.shape()[0], table.shape()[1]);
    let tv = table.to_plain_array_view::<f32>()?;
    let q = quantize_rows(rows, width, |r, c| tv[[r, c]]);
    let name = &node.name;
    let mut patch = TypedModelPatch::new(format!("quantize {name}"));
    let ids = patch.tap_model(model, node.inputs[1])?;
    let codes = patch.add_const(format!("{name}.table_i8"), q.codes)?;
    let scales = patch.add_const(
        format!("{name}.table_scale"),
        Tensor::from_shape(&[rows, 1], &q.scales)?,
    )?;
    let gathered = patch.wire_node(format!("{name}.rows_i8"), op.clone(), &[codes, ids])?[0];
    let gathered = patch.wire_node(
        format!("{name}.rows_f32"),
        cast(f32::datum_type()),
        &[gathered],
    )?[0];
    let row_scales = patch.wire_node(format!("{name}.row_scales"), op.clone(), &[scales, ids])?[0];
    let out = patch.wire_node(name, math::mul(), &[gathered, row_scales])?[0];
    patch.shunt_outside(model, OutletId::new(id, 0), out)?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_to_the_nearest_code_and_keep_their_extremes() {
        let m = [
            [0.5f32, -1.0, 0.25, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [3.0, 1.0, -2.0, 1.5],
        ];
        let q = quantize_rows(3, 4, |r, c| m[r][c]);
        let codes = q.codes.try_as_plain_ram().unwrap();
        let codes = codes.as_slice::<i8>().unwrap();
        assert_eq!(&codes[0..4], &[64, -127, 32, 0]); // 0.5 * 127 = 63.5 rounds away from 0
        assert_eq!(&codes[4..8], &[0, 0, 0, 0]);
        assert_eq!(&codes[8..12], &[127, 42, -85, 64]);
        assert_eq!(q.scales[1], 0.0);
        for (r, row) in m.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let back = codes[r * 4 + c] as f32 * q.scales[r];
                assert!(
                    (back - v).abs() <= q.scales[r] / 2.0 + 1e-6,
                    "{r},{c}: {back} vs {v}"
                );
            }
        }
    }
}
