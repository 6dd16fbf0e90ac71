//! `bertling-run`: the device build of the `bertling` command. It loads and runs model files
//! (`fill`, `complete`, `inspect`, `tokenize`, `info`) and holds no ONNX front end and no
//! protobuf: build it
//! with `cargo build --release -p bertling-tools --no-default-features --bin bertling-run`
//! (`scripts/aarch64-build.sh` does, for the Raspberry Pi). Compile models with the full
//! `bertling` on another machine and copy the model file over; the Debian package installs this
//! binary as `bertling`.

use bertling_tools::{complete, fill, info, inspect, tokenize};

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bertling::{LoadOptions, Model};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bertling",
    version,
    about = "BERT-family masked language models, offline, on small ARM boards (device build: runs model files; compile them elsewhere)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Not in this build: compile on a machine with the full `bertling`, then copy the model file.
    Compile {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Predict the masked words of a sentence, like Hugging Face's fill-mask pipeline.
    Fill(fill::FillArgs),
    /// Suggest whole words for the end of a text: the word being typed, or the next one.
    Complete(complete::CompleteArgs),
    /// Show a model file's manifest and sections.
    Inspect {
        /// The model file.
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the token ids of a text (or, without TEXT, of each JSON string line on stdin).
    Tokenize {
        /// The model file.
        model: PathBuf,
        /// The text; omit to read JSON strings, one per line, from stdin.
        text: Option<String>,
    },
    /// Show the CPU features tract's kernels depend on and, for a model, the kernels its plan uses.
    Info(info::InfoArgs),
    /// Internal (the aarch64 parity tests under qemu): one model load, then for each JSON string
    /// line of stdin one JSON line out: input ids, and per mask its top-k and full logits.
    #[command(hide = true)]
    FillLines {
        model: PathBuf,
        #[arg(short = 'k', long, default_value_t = 5)]
        top_k: usize,
    },
}

#[derive(serde::Serialize)]
struct LineMask {
    position: u32,
    tokens: Vec<u32>,
    scores: Vec<f32>,
    logits: Vec<f32>,
}

#[derive(serde::Serialize)]
struct Line {
    input_ids: Vec<u32>,
    masks: Vec<LineMask>,
}

fn fill_lines(model: &PathBuf, k: usize) -> anyhow::Result<()> {
    let mut model = Model::load_with(model, &LoadOptions { threads: 1 })?;
    let mut out = bertling_tools::output::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let text: String =
            serde_json::from_str(&line).with_context(|| format!("not a JSON string: {line}"))?;
        let answer = model.fill_mask(&text, k)?;
        let masks = answer
            .masks
            .iter()
            .enumerate()
            .map(|(i, m)| LineMask {
                position: m.position,
                tokens: m.candidates.iter().map(|c| c.token).collect(),
                scores: m.candidates.iter().map(|c| c.score).collect(),
                logits: model.last_logits(i).unwrap_or_default().to_vec(),
            })
            .collect();
        let line = Line {
            input_ids: model.last_input_ids().to_vec(),
            masks,
        };
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile { .. } => anyhow::bail!(
            "this bertling is the device build and cannot read ONNX exports: run `bertling compile` \
             on a machine with the full build (cargo install, or scripts/setup.sh) and copy the \
             model file here"
        ),
        Command::Fill(args) => fill::run(args),
        Command::Complete(args) => complete::run(args),
        Command::Inspect { model, json } => inspect::run(&model, json),
        Command::Tokenize { model, text } => tokenize::run(&model, text.as_deref()),
        Command::Info(args) => info::run(args),
        Command::FillLines { model, top_k } => fill_lines(&model, top_k),
    }
}

fn main() -> ExitCode {
    // Keep each request's freed tensors for the next instead of page-faulting them back in.
    bertling::memory::retain_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // `bertling fill ... | head -1`: the reader has what it wanted.
        Err(e) if bertling_tools::output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
