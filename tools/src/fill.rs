//! `bertling fill`: the fill-mask pipeline on the command line.

use std::path::PathBuf;

use anyhow::Result;
use bertling::{LoadOptions, Model};
use serde::Serialize;

#[derive(clap::Args)]
pub struct FillArgs {
    /// The model file.
    model: PathBuf,
    /// The text, with [MASK] (or the model's own mask token) where words are missing.
    text: String,
    /// How many candidates per mask.
    #[arg(short = 'k', long, default_value_t = 5)]
    top_k: usize,
    /// Print JSON (one object per mask, fields as the Hugging Face pipeline names them).
    #[arg(long)]
    json: bool,
    /// Threads per request.
    #[arg(long, default_value_t = 1, value_parser = crate::thread_count())]
    threads: usize,
    /// With --json: include each mask position's full logits.
    #[arg(long, requires = "json")]
    logits: bool,
}

#[derive(Serialize)]
struct Prediction {
    score: f32,
    token: u32,
    token_str: String,
    sequence: String,
}

#[derive(Serialize)]
struct MaskOut {
    position: u32,
    predictions: Vec<Prediction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<Vec<f32>>,
}

#[derive(Serialize)]
struct FillOut {
    text: String,
    input_ids: Vec<u32>,
    masks: Vec<MaskOut>,
}

pub fn run(args: FillArgs) -> Result<()> {
    let mut model = Model::load_with(
        &args.model,
        &LoadOptions {
            threads: args.threads,
        },
    )?;
    let answer = model.fill_mask(&args.text, args.top_k)?;
    let mut masks = vec![];
    for (i, mask) in answer.masks.iter().enumerate() {
        let predictions = mask
            .candidates
            .iter()
            .map(|c| {
                Ok(Prediction {
                    score: c.score,
                    token: c.token,
                    token_str: model.token_str(c.token).to_string(),
                    sequence: model.filled_sequence(&answer, i, c.token)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let logits = if args.logits {
            model.last_logits(i).map(<[f32]>::to_vec)
        } else {
            None
        };
        masks.push(MaskOut {
            position: mask.position,
            predictions,
            logits,
        });
    }
    if args.json {
        let out = FillOut {
            text: args.text,
            input_ids: model.last_input_ids().to_vec(),
            masks,
        };
        outln!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let total = masks.len();
    for (i, m) in masks.iter().enumerate() {
        if total > 1 {
            outln!("mask {} of {total} (token {}):", i + 1, m.position);
        }
        for p in &m.predictions {
            outln!(
                "{:>7.2}%  {:<16} {:>7}  {}",
                p.score * 100.0,
                p.token_str,
                p.token,
                p.sequence
            );
        }
        if i + 1 < total {
            outln!();
        }
    }
    Ok(())
}
