//! int8 matrix products: the operator int8 model files use, and its kernels.
//!
//! [`Int8Linear`] computes `y = x · Wᵀ` for f32 activations `x` (`[..., K]`) and a weight stored as
//! i8 codes with one f32 scale per output channel (`W ≈ codes · scale`):
//!
//! 1. each row of `x` is quantized on the fly, symmetric, with its own scale (`max |x| / qmax`),
//!    to codes in `[-qmax, qmax]`: `qmax` is the operator's `activation_max`, 2047 (12 bits) in
//!    format 3 files ([`wide::act_max`] bounds it so no i32 sum can overflow); format 4's grouped
//!    operators (`activation_group` 64, [`a7`]) give each group of 64 inputs its own scale and
//!    7-bit codes (`qmax` 63), and format 6's `activation_asymmetric` ones also a zero point (128
//!    codes between the group's minimum and maximum); format 7's asymmetric groups with
//!    `activation_max` 127 have 256 codes ([`a8`]: what integer dot products take);
//! 2. `Σ_k` of code products is computed exactly in i32 by bertling's kernels (AVX2, NEON or
//!    portable: identical sums on every CPU);
//! 3. the sum is scaled back by the row's and the channel's scales.
//!
//! Weights come in two layouts ([`Layout`]): `panels` ([`packed`]: 8 channels x 4 inputs
//! interleaved, what the encoder's products use) and `rows` (`[N, K]` row-major: a tied output
//! projection, whose codes are the word-embedding table's own rows, so the file stores them once).
//! Both sides are symmetric (no zero points), so nothing per request depends on the weights alone:
//! no column sums, no casts, no packing at run time.
//!
//! In NNEF it is `bertling_linear_i8(input, weight, scale, activation_max, layout, channels,
//! activation_group, activation_asymmetric)` in the `bertling` registry; format-2 files, which had none of the attributes, mean `127` and `"rows"`
//! (8-bit activations, [`kernel`]). tract's own integer matrix product was measured 40x slower than
//! its f32 one on AVX2 (tract 0.23.9), which is why bertling carries its own kernels.

pub mod a7;
pub mod a8;
#[cfg(target_arch = "x86_64")]
mod amx;
pub mod fold;
#[cfg(target_arch = "x86_64")]
mod group_avx2;
#[cfg(target_arch = "aarch64")]
mod group_neon;
/// The group quantizer in registers for this CPU's vector instructions (see
/// [`a7::GroupQuantizer`]).
#[cfg(target_arch = "x86_64")]
use group_avx2 as group_simd;
#[cfg(target_arch = "aarch64")]
use group_neon as group_simd;
pub mod kernel;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod vnni512;
pub mod wide;

use std::cell::RefCell;

use crate::threads::{par_ranges, RowsMut, PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_MACS};
use tract_core::internal::*;
use tract_nnef::internal::*;
use tract_nnef::ser::{invocation, numeric, string};

/// NNEF name of [`Int8Linear`].
pub const NNEF_NAME: &str = "bertling_linear_i8";

/// How an [`Int8Linear`] weight's codes are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, K]`, each output channel's codes contiguous.
    #[default]
    Rows,
    /// `[⌈N/8⌉, ⌈K/4⌉, 32]`, with scales per channel and group of 64 inputs
    /// (`[⌈N/8⌉, ⌈K'/64⌉, 8]`): see [`packed`].
    Panels,
}

impl Layout {
    /// The name in NNEF.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Rows => "rows",
            Layout::Panels => "panels",
        }
    }

    /// Parses the NNEF name.
    pub fn parse(s: &str) -> TractResult<Layout> {
        match s {
            "rows" => Ok(Layout::Rows),
            "panels" => Ok(Layout::Panels),
            _ => bail!("unknown int8 weight layout {s:?} (known: \"rows\", \"panels\")"),
        }
    }
}

/// `y = x · Wᵀ` with int8 weights and per-row quantized activations; inputs
/// `(x: f32 [..., K], codes: i8 (see [`Layout`]), scales: f32 [N])`, output f32 `[..., N]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Int8Linear {
    /// The weight codes' layout.
    pub layout: Layout,
    /// The largest activation code (127: 8-bit activations; 2047: 12-bit).
    pub act_max: i32,
    /// N, the output channels, for [`Layout::Panels`] (whose padded shapes do not tell it); 0 for
    /// [`Layout::Rows`], where the scales' length is N.
    pub channels: usize,
    /// Inputs per activation scale: 0, one scale per row (formats 2 and 3), or
    /// [`a7::ACT_GROUP`] with [`Layout::Panels`] and `act_max` 63 (format 4: [`a7`]).
    pub act_group: usize,
    /// Grouped operators only: asymmetric codes with a zero point per row and group
    /// ([`a7::quantize_rows_asymmetric`], format 6) instead of symmetric ones.
    pub asymmetric: bool,
    /// An f32 bias `[N]` added to the output. Never in a model file: the loader folds a constant
    /// bias `Add` after the product into it ([`fold`]), and the NNEF writer refuses it.
    pub bias: Option<Arc<Tensor>>,
}

impl Default for Int8Linear {
    /// What format-2 files meant: row-major weights, 8-bit activations.
    fn default() -> Self {
        Int8Linear {
            layout: Layout::Rows,
            act_max: kernel::QMAX as i32,
            channels: 0,
            act_group: 0,
            asymmetric: false,
            bias: None,
        }
    }
}

impl Int8Linear {
    /// Whether this operator quantizes activations per group of 64 inputs: [`a7`]'s 7-bit codes
    /// or [`a8`]'s 8-bit ones.
    pub fn grouped(&self) -> bool {
        self.act_group > 0
    }

    /// Whether this operator runs [`a8`]'s kernels (8-bit asymmetric activations per group).
    pub fn grouped8(&self) -> bool {
        self.grouped() && self.act_max == a8::ACT_MAX
    }

    /// The oldest model file format that can carry this operator: 2 (8-bit activations, row-major
    /// weights), 3 (`activation_max` other than 127, or panel-packed weights), 4
    /// (`activation_group`), 6 (`activation_asymmetric`) or 7 (grouped with `activation_max` 127:
    /// 8-bit codes, [`a8`]). The loader refuses a file whose header
    /// names an older version than its graph needs: the attributes would otherwise be read with a
    /// newer meaning than the file claims.
    ///
    /// ```
    /// use bertling::int8::{Int8Linear, Layout};
    /// assert_eq!(Int8Linear::default().min_format_version(), 2);
    /// let grouped = Int8Linear {
    ///     layout: Layout::Panels,
    ///     act_max: 63,
    ///     act_group: 64,
    ///     ..Default::default()
    /// };
    /// assert_eq!(grouped.min_format_version(), 4);
    /// let asymmetric = Int8Linear { asymmetric: true, ..grouped };
    /// assert_eq!(asymmetric.min_format_version(), 6);
    /// assert_eq!(Int8Linear { act_max: 127, ..asymmetric }.min_format_version(), 7);
    /// ```
    pub fn min_format_version(&self) -> u32 {
        if self.grouped8() {
            7
        } else if self.asymmetric {
            6
        } else if self.grouped() {
            4
        } else if self.layout == Layout::Panels || self.act_max != kernel::QMAX as i32 {
            3
        } else {
            2
        }
    }

    /// Whether it takes `n` inputs: `x`, the codes and the scales, and for grouped operators the
    /// column sums declutter adds.
    fn takes(&self, n: usize) -> bool {
        n == 3 || (self.grouped() && n == 4)
    }

    /// The kernel this operator runs on this CPU.
    pub fn kernel_name(&self) -> &'static str {
        if self.grouped8() {
            return a8::kernel_name();
        }
        if self.grouped() {
            return a7::kernel_name();
        }
        match (self.layout, self.act_max <= kernel::QMAX as i32) {
            (Layout::Panels, _) => packed::kernel_name(self.act_max),
            (Layout::Rows, true) => kernel::kernel_name(),
            (Layout::Rows, false) => wide::kernel_name(),
        }
    }

    /// `(N, K)` from the weight's and the scales' shapes and `x`'s last axis, after checking they
    /// agree.
    fn dims(&self, w: &[usize], s: &[usize], k: usize) -> TractResult<(usize, usize)> {
        let n = match self.layout {
            Layout::Rows => {
                ensure!(
                    s.len() == 1,
                    "Int8Linear: row-major scales must be [N], not {s:?}"
                );
                let n = s[0];
                ensure!(
                    w.len() == 2 && w[0] == n && w[1] == k,
                    "Int8Linear: row-major weights {w:?} do not match {n} channels of K = {k}"
                );
                n
            }
            Layout::Panels => {
                let n = self.channels;
                ensure!(
                    w.len() == 3
                        && w[0] == packed::panels(n)
                        && w[1] * packed::GROUP == packed::padded_k(k)
                        && w[2] == packed::PANEL * packed::GROUP,
                    "Int8Linear: panel weights {w:?} do not match {n} channels of K = {k}"
                );
                ensure!(
                    s == [packed::panels(n), packed::scale_groups(k), packed::PANEL],
                    "Int8Linear: panel scales {s:?} do not match {n} channels of K = {k}"
                );
                n
            }
        };
        ensure!(
            !self.asymmetric || self.grouped(),
            "Int8Linear: asymmetric activations need activation groups"
        );
        if self.grouped() {
            ensure!(
                self.layout == Layout::Panels
                    && self.act_group == a7::ACT_GROUP
                    && (self.act_max == a7::ACT_MAX
                        || (self.act_max == a8::ACT_MAX && self.asymmetric)),
                "Int8Linear: activation groups of {} need panel weights, groups of {} and \
                 activation_max {} (or {} with asymmetric codes) (got {:?}, activation_max {}{})",
                self.act_group,
                a7::ACT_GROUP,
                a7::ACT_MAX,
                a8::ACT_MAX,
                self.layout,
                self.act_max,
                if self.asymmetric { ", asymmetric" } else { "" }
            );
        }
        ensure!(
            self.act_max >= 1 && self.act_max <= wide::act_max(k, i16::MAX as i32),
            "Int8Linear: activation_max {} is out of range for K = {k} (at most {})",
            self.act_max,
            wide::act_max(k, i16::MAX as i32)
        );
        Ok((n, k))
    }
}

impl Op for Int8Linear {
    fn name(&self) -> StaticName {
        "Int8Linear".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            format!("kernel: {}", self.kernel_name()),
            format!(
                "layout: {}, activation_max: {}, activation_group: {}{}, bias: {}",
                self.layout.as_str(),
                self.act_max,
                self.act_group,
                if self.asymmetric { " asymmetric" } else { "" },
                if self.bias.is_some() {
                    "folded"
                } else {
                    "none"
                }
            ),
        ])
    }

    op_as_typed_op!();
}

thread_local! {
    /// Activation codes (8- or 16-bit) and row scales, reused across calls: no allocation per
    /// request once warm.
    static SCRATCH: RefCell<Scratch> = const { RefCell::new(Scratch { i8: Vec::new(), u8: Vec::new(), i16: Vec::new(), scales: Vec::new(), zeros: Vec::new() }) };
}

struct Scratch {
    i8: Vec<i8>,
    u8: Vec<u8>,
    i16: Vec<i16>,
    scales: Vec<f32>,
    /// Zero points of asymmetric codes, one per row and group.
    zeros: Vec<u8>,
}

impl EvalOp for Int8Linear {
    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.compute(inputs)
    }

    fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
        self.compute(inputs).map(Some)
    }
}

impl Int8Linear {
    fn compute(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        ensure!(self.takes(inputs.len()), "Int8Linear takes three inputs");
        let (xt, wt, st) = (&inputs[0], &inputs[1], &inputs[2]);
        ensure!(xt.rank() >= 1, "Int8Linear: input must have a K axis");
        let x = xt.try_as_plain_ram()?.as_slice::<f32>()?;
        let w = wt.try_as_plain_ram()?.as_slice::<i8>()?;
        let scales = st.try_as_plain_ram()?.as_slice::<f32>()?;
        let (n, k) = self.dims(wt.shape(), st.shape(), xt.shape()[xt.rank() - 1])?;
        // The column sums grouped kernels need, from declutter (computed here only when the graph
        // was not decluttered).
        let computed;
        let sums: &[i32] = match inputs.get(3) {
            Some(t) => t.try_as_plain_ram()?.as_slice::<i32>()?,
            None if self.grouped() => {
                computed = a7::column_sums(w, n, k);
                &computed
            }
            None => &[],
        };
        ensure!(
            !self.grouped() || sums.len() == st.len(),
            "Int8Linear: column sums {} do not match the scales {}",
            sums.len(),
            st.len()
        );
        let rows = x.len().checked_div(k).unwrap_or(0);
        let bias = match &self.bias {
            Some(b) => Some(b.try_as_plain_ram()?),
            None => None,
        };
        let bias = match &bias {
            Some(b) => {
                let b = b.as_slice::<f32>()?;
                ensure!(
                    b.len() == n,
                    "Int8Linear: bias of {} for {n} channels",
                    b.len()
                );
                Some(b)
            }
            None => None,
        };
        let mut shape: TVec<usize> = xt.shape().into();
        *shape.last_mut().unwrap() = n;
        let out = if k == 0 {
            let mut out = Tensor::zero::<f32>(&shape)?;
            if let Some(bias) = bias {
                let mut view = out.try_as_plain_ram_mut()?;
                for row in view.as_slice_mut::<f32>()?.chunks_exact_mut(n.max(1)) {
                    row.copy_from_slice(bias);
                }
            }
            out
        } else {
            // SAFETY: f32 has no invalid bit patterns, and the kernels write every element below
            // (all rows, every column range) before anyone reads it.
            let mut out = unsafe { Tensor::uninitialized::<f32>(&shape)? };
            {
                let mut view = out.try_as_plain_ram_mut()?;
                let y = view.as_slice_mut::<f32>()?;
                SCRATCH.with_borrow_mut(|scratch| {
                    self.run(scratch, x, (w, scales, sums), bias, (rows, n, k), y)
                });
            }
            out
        };
        Ok(tvec!(out.into_tvalue()))
    }

    /// Quantizes `x` into the scratch codes and runs the kernel, on the thread pool when there is
    /// one and the product is large enough; each thread adds the bias to the columns it wrote
    /// while they are still in its cache.
    fn run(
        &self,
        scratch: &mut Scratch,
        x: &[f32],
        (w, scales, sums): (&[i8], &[f32], &[i32]),
        bias: Option<&[f32]>,
        (rows, n, k): (usize, usize, usize),
        y: &mut [f32],
    ) {
        scratch.scales.resize(rows, 0.0);
        let narrow = self.layout == Layout::Rows && self.act_max <= kernel::QMAX as i32;
        let (grouped, grouped8) = (self.grouped(), self.grouped8());
        // Units the work is split in: panels of 8 channels, or blocks of 4 rows of weights.
        let units = match self.layout {
            Layout::Panels if grouped8 => {
                let (kp, g) = (packed::padded_k(k), a8::groups(k));
                scratch.scales.resize(rows * g, 0.0);
                // Rows split between the threads when there are enough values.
                let parallel = rows * k >= PARALLEL_MIN_ELEMENTS;
                let scales = RowsMut::new(&mut scratch.scales, g);
                if a8::wide_codes() {
                    scratch.i16.resize(rows * kp, 0);
                    let codes = RowsMut::new(&mut scratch.i16, kp);
                    par_ranges(rows, parallel, |r0, r1| {
                        // SAFETY: rows r0..r1 are this range's alone.
                        let (c, s) = unsafe { (codes.rows(r0, r1), scales.rows(r0, r1)) };
                        a8::quantize_rows_wide(&x[r0 * k..r1 * k], k, c, s);
                    });
                } else {
                    scratch.u8.resize(rows * kp, 0);
                    scratch.zeros.resize(rows * g, 0);
                    let codes = RowsMut::new(&mut scratch.u8, kp);
                    let zeros = RowsMut::new(&mut scratch.zeros, g);
                    let offset = a8::code_offset();
                    par_ranges(rows, parallel, |r0, r1| {
                        // SAFETY: rows r0..r1 are this range's alone.
                        let (c, s, z) = unsafe {
                            (codes.rows(r0, r1), scales.rows(r0, r1), zeros.rows(r0, r1))
                        };
                        a8::quantize_rows(&x[r0 * k..r1 * k], k, offset, c, s, z);
                    });
                }
                packed::panels(n)
            }
            Layout::Panels if grouped => {
                scratch.u8.resize(rows * packed::padded_k(k), 0);
                scratch.scales.resize(rows * a7::groups(k), 0.0);
                let offset = a7::code_offset();
                if self.asymmetric {
                    scratch.zeros.resize(rows * a7::groups(k), 0);
                    let (codes, scales) = (&mut scratch.u8, &mut scratch.scales);
                    a7::quantize_rows_asymmetric(x, k, offset, codes, scales, &mut scratch.zeros);
                } else {
                    a7::quantize_rows(x, k, offset, &mut scratch.u8, &mut scratch.scales);
                }
                packed::panels(n)
            }
            Layout::Panels => {
                scratch.i16.resize(rows * packed::padded_k(k), 0);
                packed::quantize_rows(x, k, self.act_max, &mut scratch.i16, &mut scratch.scales);
                packed::panels(n)
            }
            Layout::Rows if narrow => {
                scratch.i8.resize(rows * k, 0);
                kernel::quantize_rows(x, k, &mut scratch.i8, &mut scratch.scales);
                n.div_ceil(4)
            }
            Layout::Rows => {
                scratch.i16.resize(rows * k, 0);
                wide::quantize_rows(x, k, self.act_max, &mut scratch.i16, &mut scratch.scales);
                n.div_ceil(4)
            }
        };
        let (c8, cu8, c16, xs) = (
            &scratch.i8[..],
            &scratch.u8[..],
            &scratch.i16[..],
            &scratch.scales[..],
        );
        // `dims` checked that asymmetric operators are grouped.
        let zeros = self.asymmetric.then_some(&scratch.zeros[..]);
        let codes8 = match a8::wide_codes() {
            true => a8::Codes::Wide(c16),
            false => a8::Codes::Bytes(cu8, &scratch.zeros),
        };
        // The columns units u0..u1 own.
        let per_unit = match self.layout {
            Layout::Panels => packed::PANEL,
            Layout::Rows => 4,
        };
        let columns = |(u0, u1): (usize, usize)| ((u0 * per_unit).min(n), (u1 * per_unit).min(n));
        // Units u0..u1 into the output behind `ptr`, then their bias.
        let part = |(u0, u1): (usize, usize), y: &mut [f32]| {
            match self.layout {
                Layout::Panels if grouped8 => {
                    a8::gemm(codes8, xs, w, scales, sums, k, n, rows, (u0, u1), y, n)
                }
                Layout::Panels if grouped => {
                    a7::gemm(cu8, xs, zeros, w, scales, sums, k, n, rows, (u0, u1), y, n)
                }
                Layout::Panels => {
                    packed::gemm(c16, xs, self.act_max, w, scales, k, n, rows, (u0, u1), y, n)
                }
                Layout::Rows if narrow => {
                    kernel::gemm_i8(c8, xs, w, scales, k, rows, columns((u0, u1)), y, n)
                }
                Layout::Rows => wide::gemm(c16, xs, w, scales, k, rows, columns((u0, u1)), y, n),
            }
            if let (Some(bias), true) = (bias, n > 0) {
                let (c0, c1) = columns((u0, u1));
                for row in y[..rows * n].chunks_exact_mut(n) {
                    for (y, b) in row[c0..c1].iter_mut().zip(&bias[c0..c1]) {
                        *y += b;
                    }
                }
            }
        };
        // SAFETY: each range of units writes its own columns of `y` (panels of 8 channels, or
        // blocks of 4 rows of weights), in every row.
        unsafe { crate::threads::split(units, rows * n * k >= PARALLEL_MIN_MACS, y, part) };
    }
}

impl TypedOp for Int8Linear {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(self.takes(inputs.len()), "Int8Linear takes three inputs");
        let (x, w, s) = (inputs[0], inputs[1], inputs[2]);
        ensure!(
            x.datum_type == f32::datum_type(),
            "Int8Linear input must be f32"
        );
        ensure!(
            w.datum_type == i8::datum_type(),
            "Int8Linear weights must be i8"
        );
        ensure!(
            s.datum_type == f32::datum_type() || s.datum_type == f16::datum_type(),
            "Int8Linear scales must be f32 or f16"
        );
        ensure!(x.rank() >= 1, "Int8Linear: input must have a K axis");
        let k = x.shape[x.rank() - 1]
            .to_usize()
            .context("Int8Linear: K must be known")?;
        let known = |f: &TypedFact, what: &str| -> TractResult<TVec<usize>> {
            f.shape
                .iter()
                .map(|d| d.to_usize().map_err(|e| anyhow!("{e:?}")))
                .collect::<TractResult<_>>()
                .with_context(|| format!("Int8Linear: the {what}' shape must be known"))
        };
        let (n, _) = self.dims(&known(w, "weights")?, &known(s, "scales")?, k)?;
        if let Some(sums) = inputs.get(3) {
            ensure!(
                sums.datum_type == i32::datum_type() && sums.shape == s.shape,
                "Int8Linear: column sums must be i32 shaped like the scales"
            );
        }
        if s.datum_type == f16::datum_type() {
            ensure!(
                s.konst.is_some(),
                "Int8Linear: f16 scales must be a constant"
            );
        }
        let mut shape: TVec<TDim> = x.shape.iter().cloned().collect();
        *shape.last_mut().unwrap() = n.to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    /// Files store panel scales as f16: turn the constant into f32 once, when the graph is loaded
    /// (so no request converts them). Grouped operators ([`a7`]) also get their weights' column
    /// sums here, as a fourth input: they depend on the weights alone.
    fn declutter(
        &self,
        model: &TypedModel,
        node: &TypedNode,
    ) -> TractResult<Option<TypedModelPatch>> {
        let fact = model.outlet_fact(node.inputs[2])?;
        let f16_scales = fact
            .konst
            .as_ref()
            .filter(|_| fact.datum_type == f16::datum_type());
        let weights = model.outlet_fact(node.inputs[1])?.konst.as_ref();
        let needs_sums = self.grouped() && node.inputs.len() == 3 && weights.is_some();
        if f16_scales.is_none() && !needs_sums {
            return Ok(None);
        }
        let mut patch = TypedModelPatch::new(format!("prepared weights for {}", node.name));
        let x = patch.tap_model(model, node.inputs[0])?;
        let w = patch.tap_model(model, node.inputs[1])?;
        // A derived constant equal to one already in the graph (another layer's, when layers
        // share weights: ALBERT) is read from there, not held twice.
        let constant = |patch: &mut TypedModelPatch, name: String, t: Tensor| {
            match crate::shared_constants::find_equal(model, &t) {
                Some(outlet) => patch.tap_model(model, outlet),
                None => patch.add_const(name, t),
            }
        };
        let s = match f16_scales {
            Some(scales) => constant(
                &mut patch,
                format!("{}.scale_f32", node.name),
                scales.cast_to::<f32>()?.into_owned(),
            )?,
            None => patch.tap_model(model, node.inputs[2])?,
        };
        let mut inputs = vec![x, w, s];
        for i in &node.inputs[3..] {
            inputs.push(patch.tap_model(model, *i)?);
        }
        if let (true, Some(weights)) = (needs_sums, weights) {
            let k = model.outlet_fact(node.inputs[0])?.shape.last().cloned();
            let k = k
                .and_then(|d| d.to_usize().ok())
                .context("Int8Linear: K must be known")?;
            let n = self.channels;
            let codes = weights.try_as_plain_ram()?;
            let codes = codes.as_slice::<i8>()?;
            // Every kernel's exactness bound (pairs of products within i16) takes |w| <= 127,
            // which is all the compiler writes.
            ensure!(
                !codes.contains(&i8::MIN),
                "Int8Linear {}: a weight code is -128, outside the -127..=127 a model file \
                 stores (a hand-made graph)",
                node.name
            );
            let sums = a7::column_sums(codes, n, k);
            let shape = [packed::panels(n), a7::groups(k), packed::PANEL];
            let sums = Tensor::from_shape(&shape, &sums)?;
            inputs.push(constant(
                &mut patch,
                format!("{}.column_sums", node.name),
                sums,
            )?);
        }
        let y = patch.wire_node(&node.name, self.clone(), &inputs)?[0];
        patch.shunt_outside(model, node.id.into(), y)?;
        Ok(Some(patch))
    }

    as_op!();
}

fn dump(ast: &mut IntoAst, node: &TypedNode, op: &Int8Linear) -> TractResult<Option<Arc<RValue>>> {
    ensure!(
        op.bias.is_none(),
        "Int8Linear: a bias folded at load is not part of the file format"
    );
    let input = ast.mapping[&node.inputs[0]].clone();
    let weight = ast.mapping[&node.inputs[1]].clone();
    let scale = ast.mapping[&node.inputs[2]].clone();
    Ok(Some(invocation(
        NNEF_NAME,
        &[input, weight, scale],
        &[
            ("activation_max", numeric(op.act_max)),
            ("layout", string(op.layout.as_str())),
            ("channels", numeric(op.channels)),
            ("activation_group", numeric(op.act_group)),
            ("activation_asymmetric", numeric(op.asymmetric as i64)),
        ],
    )))
}

fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let weight = invocation.named_arg_as(builder, "weight")?;
    let scale = invocation.named_arg_as(builder, "scale")?;
    let act_max: i64 = invocation.named_arg_as(builder, "activation_max")?;
    let layout: String = invocation.named_arg_as(builder, "layout")?;
    let channels: i64 = invocation.named_arg_as(builder, "channels")?;
    let act_group: i64 = invocation.named_arg_as(builder, "activation_group")?;
    let asymmetric: i64 = invocation.named_arg_as(builder, "activation_asymmetric")?;
    let op = Int8Linear {
        layout: Layout::parse(&layout)?,
        act_max: i32::try_from(act_max)
            .ok()
            .filter(|&a| a >= 1)
            .with_context(|| format!("Int8Linear: activation_max {act_max} is out of range"))?,
        channels: usize::try_from(channels)
            .ok()
            .with_context(|| format!("Int8Linear: channels {channels} is out of range"))?,
        act_group: usize::try_from(act_group)
            .ok()
            .with_context(|| format!("Int8Linear: activation_group {act_group} is out of range"))?,
        asymmetric: match asymmetric {
            0 => false,
            1 => true,
            _ => bail!("Int8Linear: activation_asymmetric must be 0 or 1, not {asymmetric}"),
        },
        bias: None,
    };
    builder.wire(op, &[input, weight, scale])
}

/// Adds the operator to a registry.
pub fn register(registry: &mut Registry) {
    registry.register_dumper(dump);
    registry.register_primitive(
        NNEF_NAME,
        &[
            TypeName::Scalar.tensor().named("input"),
            TypeName::Integer.tensor().named("weight"),
            TypeName::Scalar.tensor().named("scale"),
            // Absent in format-2 files: 8-bit activations, row-major weights.
            TypeName::Integer.named("activation_max").default(127),
            TypeName::String.named("layout").default("rows"),
            // N for "panels" (0 for "rows").
            TypeName::Integer.named("channels").default(0),
            // Absent before format 4: one activation scale per row.
            TypeName::Integer.named("activation_group").default(0),
            // Absent before format 6: symmetric codes.
            TypeName::Integer.named("activation_asymmetric").default(0),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
}

/// A linear congruential generator for the kernels' tests: deterministic inputs without a
/// dependency.
#[cfg(test)]
pub(crate) fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_linalg::multithread::Executor;

    /// A graph of one `Int8Linear` written to NNEF and read back, with the operator's attributes
    /// removed from the text when `strip` (what a format 2 file holds).
    fn round_trip(op: Int8Linear, strip: bool) -> TractResult<TypedModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 5]))?;
        let codes: Vec<i8> = (0..15).map(|i| (i * 17 % 255 - 127) as i8).collect();
        let (w, s) = if op.layout == Layout::Panels {
            let (codes, scales) = packed::quantize_weight(
                &codes.iter().map(|&c| c as f32).collect::<Vec<_>>(),
                3,
                5,
                |s| s,
            );
            let w = Tensor::from_shape(&[packed::panels(3), packed::padded_k(5) / 4, 32], &codes)?;
            let shape = [packed::panels(3), packed::scale_groups(5), packed::PANEL];
            (w, Tensor::from_shape(&shape, &scales)?)
        } else {
            let w = Tensor::from_shape(&[3, 5], &codes)?;
            (w, Tensor::from_shape(&[3], &[0.5f32, 0.25, 2.0])?)
        };
        let w = model.add_const("w", w)?;
        let s = model.add_const("s", s)?;
        let y = model.wire_node("y", op, &[x, w, s])?;
        model.select_output_outlets(&y)?;
        let nnef = crate::graph::nnef();
        let mut proto = tract_nnef::ser::to_proto_model(&nnef, &model)?;
        let mut text = vec![];
        tract_nnef::ast::dump::Dumper::new(&nnef, &mut text).document(&proto.doc)?;
        let mut text = String::from_utf8(text)?;
        if strip {
            for attr in [
                ", activation_max = 127",
                ", layout = \"rows\"",
                ", channels = 0",
                ", activation_group = 0",
                ", activation_asymmetric = 0",
            ] {
                ensure!(text.contains(attr), "{attr} not in {text}");
                text = text.replace(attr, "");
            }
        }
        proto.doc = tract_nnef::ast::parse::parse_document(&text)?;
        nnef.model_for_proto_model(&proto)
    }

    #[test]
    fn format_2_graphs_without_the_attributes_read_as_8_bit_rows() -> TractResult<()> {
        let model = round_trip(Int8Linear::default(), true)?;
        let ops: Vec<&Int8Linear> = model
            .nodes
            .iter()
            .filter_map(|n| n.op_as::<Int8Linear>())
            .collect();
        assert_eq!(ops, [&Int8Linear::default()]);
        assert_eq!(ops[0].act_max, 127);
        assert_eq!(ops[0].layout, Layout::Rows);
        // And it runs the 8-bit kernel: the same answer as the portable one.
        let x = Tensor::from_shape(
            &[2, 5],
            &[0.5f32, -1.0, 0.25, 2.0, 0.0, 1.0, 1.0, -3.0, 0.5, 0.1],
        )?;
        let y = model.into_runnable()?.run(tvec!(x.clone().into_tvalue()))?;
        let mut codes = [0i8; 10];
        let mut xs = [0f32; 2];
        let plain = x.try_as_plain_ram()?;
        kernel::quantize_rows(plain.as_slice::<f32>()?, 5, &mut codes, &mut xs);
        let w: Vec<i8> = (0..15).map(|i| (i * 17 % 255 - 127) as i8).collect();
        let mut want = [0f32; 6];
        kernel::portable(
            &codes,
            &xs,
            &w,
            &[0.5, 0.25, 2.0],
            5,
            2,
            (0, 3),
            &mut want,
            3,
        );
        assert_eq!(y[0].try_as_plain_ram()?.as_slice::<f32>()?, &want);
        Ok(())
    }

    #[test]
    fn a_thread_pool_gives_the_same_outputs_and_adds_the_bias_once() -> TractResult<()> {
        // Large enough to be split between threads (by panels of output channels, or blocks of 4
        // rows of row-major weights; grouped8's quantization by rows too), with a last panel only
        // partly used and a short last group of inputs.
        let (rows, k, n) = (37, 1000, 300);
        assert!(rows * k * n >= PARALLEL_MIN_MACS && rows * k >= PARALLEL_MIN_ELEMENTS);
        let mut seed = 7u64;
        let mut value = || (lcg(&mut seed) % 2001) as f32 / 1000.0 - 1.0;
        let x: Vec<f32> = (0..rows * k).map(|_| value()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| value()).collect();
        let (codes, scales) = packed::quantize_weight(&w, n, k, |s| s);
        let bias: Vec<f32> = (0..n).map(|_| value()).collect();
        let bias = Arc::new(Tensor::from_shape(&[n], &bias)?);
        let rows_w: Vec<i8> = (0..n * k).map(|i| (i * 37 % 255) as i8).collect();
        let rows_s: Vec<f32> = (0..n).map(|i| 1.0 / (1 + i % 7) as f32).collect();
        // Panels with 12-bit, grouped 7-bit and grouped 8-bit activations, and row-major weights;
        // without and with a folded bias.
        for (layout, grouped, asymmetric, act_max) in [
            (Layout::Panels, false, false, 2047),
            (Layout::Panels, true, false, a7::ACT_MAX),
            (Layout::Panels, true, true, a7::ACT_MAX),
            (Layout::Panels, true, true, a8::ACT_MAX),
            (Layout::Rows, false, false, 2047),
        ] {
            let mut op = Int8Linear {
                layout,
                act_max,
                channels: if layout == Layout::Panels { n } else { 0 },
                act_group: if grouped { a7::ACT_GROUP } else { 0 },
                asymmetric,
                bias: None,
            };
            let kp = packed::padded_k(k);
            let inputs = || -> TractResult<TVec<TValue>> {
                let x = Tensor::from_shape(&[rows, k], &x)?.into_tvalue();
                Ok(match layout {
                    Layout::Panels => tvec!(
                        x,
                        Tensor::from_shape(&[packed::panels(n), kp / 4, 32], &codes)?.into_tvalue(),
                        Tensor::from_shape(
                            &[packed::panels(n), packed::scale_groups(k), packed::PANEL],
                            &scales
                        )?
                        .into_tvalue(),
                    ),
                    Layout::Rows => tvec!(
                        x,
                        Tensor::from_shape(&[n, k], &rows_w)?.into_tvalue(),
                        Tensor::from_shape(&[n], &rows_s)?.into_tvalue(),
                    ),
                })
            };
            let plain = op.compute(inputs()?)?;
            let plain = plain[0].try_as_plain_ram()?;
            let plain = plain.as_slice::<f32>()?;
            for with_bias in [false, true] {
                op.bias = with_bias.then(|| bias.clone());
                let one = op.compute(inputs()?)?;
                let pool = Executor::multithread(2);
                let two = tract_linalg::multithread::multithread_tract_scope(pool, || {
                    op.compute(inputs()?)
                })?;
                let team = crate::threads::Team::new(2)?;
                let in_team = team.install(|| op.compute(inputs()?))?;
                assert_eq!(one[0].shape(), &[rows, n]);
                let one = one[0].try_as_plain_ram()?;
                let one = one.as_slice::<f32>()?;
                let what = format!(
                    "{layout:?}, grouped: {grouped} {asymmetric} {act_max}, bias: {with_bias}"
                );
                assert_eq!(one, two[0].try_as_plain_ram()?.as_slice::<f32>()?, "{what}");
                let in_team = in_team[0].try_as_plain_ram()?;
                assert_eq!(one, in_team.as_slice::<f32>()?, "{what}, in a team");
                // The bias is added once to every output, after the product.
                let b = bias.try_as_plain_ram()?;
                let b = b.as_slice::<f32>()?;
                for (i, (got, p)) in one.iter().zip(plain).enumerate() {
                    let want = if with_bias { p + b[i % n] } else { *p };
                    assert_eq!(got.to_bits(), want.to_bits(), "{what}, element {i}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn a_weight_code_of_minus_128_is_refused_when_the_graph_is_prepared() -> TractResult<()> {
        let (rows, k, n) = (2, 64, 8);
        let op = Int8Linear {
            layout: Layout::Panels,
            act_max: a8::ACT_MAX,
            channels: n,
            act_group: a7::ACT_GROUP,
            asymmetric: true,
            bias: None,
        };
        for bad in [false, true] {
            let mut codes = vec![1i8; n * k];
            if bad {
                codes[n * k - 3] = i8::MIN;
            }
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([rows, k]))?;
            let w = model.add_const(
                "w",
                Tensor::from_shape(&[packed::panels(n), packed::padded_k(k) / 4, 32], &codes)?,
            )?;
            let scales = vec![1f32; packed::panels(n) * packed::scale_groups(k) * packed::PANEL];
            let shape = [packed::panels(n), packed::scale_groups(k), packed::PANEL];
            let s = model.add_const("s", Tensor::from_shape(&shape, &scales)?)?;
            let y = model.wire_node("linear", op.clone(), &[x, w, s])?;
            model.select_output_outlets(&y)?;
            let prepared = model.into_decluttered();
            match (bad, prepared) {
                (false, r) => {
                    r?;
                }
                (true, Ok(_)) => panic!("a -128 weight was accepted"),
                (true, Err(e)) => assert!(format!("{e:#}").contains("-128"), "{e:#}"),
            }
        }
        Ok(())
    }

    #[test]
    fn the_attributes_survive_a_round_trip() -> TractResult<()> {
        let rows = Int8Linear {
            layout: Layout::Rows,
            act_max: 2047,
            channels: 0,
            act_group: 0,
            asymmetric: false,
            bias: None,
        };
        let grouped = Int8Linear {
            layout: Layout::Panels,
            act_max: a7::ACT_MAX,
            channels: 3,
            act_group: a7::ACT_GROUP,
            asymmetric: false,
            bias: None,
        };
        let asymmetric = Int8Linear {
            asymmetric: true,
            ..grouped.clone()
        };
        for op in [rows, grouped, asymmetric] {
            let model = round_trip(op.clone(), false)?;
            let ops: Vec<&Int8Linear> = model
                .nodes
                .iter()
                .filter_map(|n| n.op_as::<Int8Linear>())
                .collect();
            assert_eq!(ops, [&op]);
        }
        Ok(())
    }
}
