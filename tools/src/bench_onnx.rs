//! `bertling bench-onnx` (hidden): the plain tract-onnx baseline. Loads an export's raw
//! `model.onnx` with tract-onnx (`with_ignore_value_info(true)`, input facts fixed to `[1, seq]`
//! i64, `into_optimized`, a plan with the same executor as the runtime) and serves the worker
//! protocol of [`crate::bench`] with inputs written by `bertling bench --write-inputs` (the same
//! token ids every engine gets). A change of sequence length re-plans the graph, untimed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::multithread::Executor;
use tract_onnx::tract_core::internal::RunOptions;

use crate::bench::{serve, BenchInput, BenchInputs, Engine};
use crate::compile::{guarded, read_onnx};
use bertling::format::InputKind;

#[derive(clap::Args, Debug)]
pub struct BenchOnnxArgs {
    /// The export directory (model.onnx inside) or the .onnx file.
    pub export: PathBuf,
    /// Inputs written by `bertling bench MODEL --write-inputs FILE`.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Threads per request.
    #[arg(long, default_value_t = 1, value_parser = crate::thread_count())]
    pub threads: usize,
}

struct TractOnnx {
    model: InferenceModel,
    feeds: Vec<InputKind>,
    threads: usize,
    state: Option<TypedSimpleState>,
    seq: usize,
}

impl TractOnnx {
    fn load(path: &Path, threads: usize) -> Result<TractOnnx> {
        let path = if path.is_dir() {
            path.join("model.onnx")
        } else {
            path.to_path_buf()
        };
        let onnx = read_onnx(&path)?;
        let (model, feeds) = (onnx.model, onnx.inputs);
        Ok(TractOnnx {
            model,
            feeds,
            threads: threads.max(1),
            state: None,
            seq: 0,
        })
    }
}

impl Engine for TractOnnx {
    fn prepare(&mut self, seq: usize) -> Result<()> {
        if self.state.is_some() && self.seq == seq {
            return Ok(());
        }
        self.state = None; // drop the old plan first: one plan's memory at a time
        let mut model = self.model.clone();
        for ix in 0..self.feeds.len() {
            model.set_input_fact(
                ix,
                InferenceFact::dt_shape(i64::datum_type(), tvec![1, seq]),
            )?;
        }
        let run_options = RunOptions {
            executor: (self.threads > 1).then(|| Executor::multithread(self.threads)),
            ..RunOptions::default()
        };
        let state = guarded("tract cannot optimize the graph", || {
            let plan = TypedSimplePlan::new_with_options(model.into_optimized()?, &run_options)?;
            plan.spawn()
        })?;
        self.state = Some(state);
        self.seq = seq;
        Ok(())
    }

    fn run(&mut self, input: &BenchInput) -> Result<u32> {
        self.prepare(input.seq)?;
        let n = input.ids.len();
        let inputs = bertling::graph::input_tensors(&self.feeds, &input.ids, &input.type_ids)?;
        let state = self.state.as_mut().context("not prepared")?;
        let out = state.run(inputs)?;
        let logits = out[0]
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())?;
        let vocab = logits.len() / n.max(1);
        let row = logits
            .get(input.mask_position * vocab..(input.mask_position + 1) * vocab)
            .context("logits too short")?;
        let top = row
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 {
                    (i, l)
                } else {
                    best
                }
            });
        Ok(top.0 as u32)
    }
}

pub fn run(args: BenchOnnxArgs) -> Result<()> {
    let inputs = BenchInputs::read(&args.inputs)?;
    serve(&inputs, args.threads, |threads| {
        TractOnnx::load(&args.export, threads)
    })
}
