//! `bertling`: compile Hugging Face ONNX exports into bertling model files and run them.

use bertling_tools::info;
use bertling_tools::{bench, bench_onnx, compile, complete, fill, inspect, tokenize};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Counts allocations for `bertling bench` (per-request allocations, heap growth).
#[global_allocator]
static ALLOC: bertling_tools::alloc_counter::CountingAlloc =
    bertling_tools::alloc_counter::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "bertling",
    version,
    about = "BERT-family masked language models, offline, on small ARM boards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a Hugging Face ONNX export (model.onnx, config.json, tokenizer.json) into one model file.
    Compile {
        /// The export directory (as written by `optimum-cli export onnx --task fill-mask`).
        export_dir: PathBuf,
        /// The model file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Weight precision: int8 (matrix products and word embeddings in 8-bit integers; about a
        /// quarter of the size, faster) or fp32 (the export's numbers exactly).
        #[arg(long, default_value = "int8", value_parser = compile::parse_precision)]
        precision: bertling::format::Precision,
        /// int8 activations: grouped8 (8-bit codes with a scale and a zero point per 64 inputs, in
        /// the encoder; the head at the masks keeps 12-bit codes: as accurate as rows12 on a real
        /// model, one integer dot product per 16 or 32 multiply-adds on a Pi 5 or with AVX-VNNI, the
        /// 12-bit speed elsewhere), rows12 (12-bit codes, a scale per token, everywhere: the most
        /// accurate, by a hair) or grouped7 (7-bit codes like grouped8: less accurate, faster on a
        /// Zen 3 only). BENCHMARKS.md has the figures; `bertling bench` tells for this CPU.
        #[arg(long, default_value = "grouped8", value_parser = compile::parse_activations)]
        int8_activations: compile::Activations,
        /// The smallest cosine similarity of the int8 file's logits to the export's, on a probe
        /// sentence, the compiler accepts (lower it to keep a file it would refuse).
        #[arg(long, default_value_t = 0.99)]
        int8_min_cosine: f32,
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
    /// Measure latency (p50/p90), load time, time to first answer, peak RSS and heap use.
    Bench(bench::BenchArgs),
    /// Internal: the plain tract-onnx baseline worker of the benchmark harness.
    #[command(hide = true)]
    BenchOnnx(bench_onnx::BenchOnnxArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Compile {
            export_dir,
            output,
            precision,
            int8_activations,
            int8_min_cosine,
        } => {
            let options = compile::Options {
                precision,
                activations: int8_activations,
                min_int8_cosine: int8_min_cosine,
            };
            let c = compile::compile_with(&export_dir, &output, &options)?;
            let m = &c.manifest;
            if precision == bertling::format::Precision::Int8 {
                bertling_tools::outln!(
                    "int8: {} matrix products and {} embedding tables quantized, {} matrix products kept in fp32",
                    c.quantized.matmuls, c.quantized.embeddings, c.quantized.matmuls_kept
                );
            }
            bertling_tools::outln!(
                "compiled {} ({}, {} layers, hidden {}, vocab {}, up to {} tokens, {}) -> {} ({:.1} MB); check on a probe: max |logit diff| {:.2e}, cosine {:.6}",
                export_dir.display(),
                m.architecture,
                m.num_layers,
                m.hidden_size,
                m.vocab_size,
                m.max_tokens,
                m.precision,
                output.display(),
                c.bytes as f64 / 1e6,
                c.check.max_abs_diff,
                c.check.min_cosine
            );
            Ok(())
        }
        Command::Fill(args) => fill::run(args),
        Command::Complete(args) => complete::run(args),
        Command::Inspect { model, json } => inspect::run(&model, json),
        Command::Tokenize { model, text } => tokenize::run(&model, text.as_deref()),
        Command::Info(args) => info::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchOnnx(args) => bench_onnx::run(args),
    }
}

fn main() -> ExitCode {
    // Keep each request's freed tensors for the next instead of page-faulting them back in.
    bertling::memory::retain_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
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
