//! `bertling bench`: latency, load time, time to first answer, peak RSS and heap use of a model
//! file, per sequence length and thread count.
//!
//! Each thread count is measured in its own child process (this binary re-run as a *worker*), so
//! that peak RSS belongs to one configuration. Parent and worker speak JSON lines over the child's
//! stdin/stdout (the worker protocol below); the cross-engine harness (`bench/run.py`) drives the
//! same workers, and `bertling bench-onnx` (plain tract-onnx) speaks the same protocol.
//!
//! Worker protocol: the worker loads the model, answers `inputs[0]` once, then prints
//! `{"ok":true,"ready":true,"load_ms":..,"first_ms":..,"rss_load_kb":..}`. Then, one JSON object
//! per line, it answers
//! - `{"cmd":"run","seq":S,"n":N}`: N requests on the input of S tokens ->
//!   `{"ok":true,"ms":[..],"allocs":[..],"bytes":[..],"top1":T}` (allocation calls and bytes
//!   requested per request, from the counting allocator, when the binary has it);
//! - `{"cmd":"growth","seq":S,"n":N}`: N requests, heap growth across them ->
//!   `{"ok":true,"n":N,"net_bytes":..,"allocs":..,"bytes":..,"rss_before_kb":..,"rss_after_kb":..}`;
//! - `{"cmd":"stats"}` -> `{"ok":true,"vmhwm_kb":..,"vmrss_kb":..}`;
//! - `{"cmd":"threads","n":T}`: load again with T threads -> the ready line's fields;
//! - `{"cmd":"quit"}`. Errors are `{"ok":false,"error":".."}`; the worker goes on.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bertling::{FillMask, LoadOptions, Model};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::alloc_counter::{CountingAlloc, Counts};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// The model file.
    pub model: PathBuf,
    /// Sequence lengths to measure, in tokens (special tokens included); each input holds one mask.
    #[arg(long, value_delimiter = ',', default_value = "8,16,64,128")]
    pub seq: Vec<usize>,
    /// Thread counts to measure (one worker process each).
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = crate::thread_count())]
    pub threads: Vec<usize>,
    /// Timed requests per sequence length (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Untimed requests per sequence length first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Requests over which heap growth is measured (at the shortest sequence length; 0 skips).
    #[arg(long, default_value_t = 1000)]
    pub growth: usize,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only write the benchmark inputs (texts and their token ids, JSON) to this file and exit.
    #[arg(long, value_name = "FILE")]
    pub write_inputs: Option<PathBuf>,
    /// Also measure text completion per keystroke: --completion-text typed one character at a
    /// time, for words of up to 1, 2 and 3 pieces (one thread, in this process).
    #[arg(long)]
    pub completion: bool,
    /// Only the completion measurement (implies --completion).
    #[arg(long)]
    pub completion_only: bool,
    /// Forward-pass budget per keystroke for the completion measurement.
    #[arg(long, default_value_t = 8)]
    pub completion_passes: usize,
    /// The text typed for the completion measurement.
    #[arg(
        long,
        default_value = "Please insert your card and choose the amount you want to withdraw"
    )]
    pub completion_text: String,
    /// Print the time per operator type instead (in this process, with the first --threads value), and the planned
    /// nodes that compute from weights alone.
    #[arg(long)]
    pub profile: bool,
    /// Internal: run as a worker (the protocol in the module docs) with these inputs.
    #[arg(long, hide = true, value_name = "INPUTS")]
    pub worker: Option<PathBuf>,
}

/// One benchmark input: a text that tokenizes to exactly `seq` tokens with one mask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchInput {
    pub seq: usize,
    /// The text with the generic `[MASK]`.
    pub text: String,
    /// The text with the model's own mask token (what a Hugging Face pipeline is given).
    pub model_text: String,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub mask_position: usize,
}

/// The file `--write-inputs` writes and workers read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchInputs {
    pub model: String,
    pub architecture: String,
    pub mask_token: String,
    pub inputs: Vec<BenchInput>,
}

impl BenchInputs {
    pub fn read(path: &Path) -> Result<BenchInputs> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not bench inputs", path.display()))
    }

    pub fn get(&self, seq: usize) -> Result<&BenchInput> {
        self.inputs
            .iter()
            .find(|i| i.seq == seq)
            .ok_or_else(|| anyhow!("no input of {seq} tokens (have {:?})", self.seqs()))
    }

    pub fn seqs(&self) -> Vec<usize> {
        self.inputs.iter().map(|i| i.seq).collect()
    }
}

/// Common words that are one token in every tokenizer we know; the filler of benchmark texts.
const FILLER: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are", "as", "with",
    "they", "at", "be", "this", "from", "by", "not", "but", "what", "all", "were", "when", "we",
    "there", "can", "an", "your", "which", "their", "said", "if", "will", "each", "about", "how",
    "up", "out", "them", "then", "she", "many", "some", "so", "these", "would", "other", "into",
    "has", "more", "two", "like", "him", "see", "time", "could", "no", "make", "than", "first",
    "been", "its", "who", "now", "people", "my", "made", "over", "did", "down", "only", "way",
    "find", "use", "may", "water", "long", "little", "very", "after", "words", "called", "just",
    "where", "most", "know", "a", "i", ",", ".",
];

/// Builds a text with one mask that `model` tokenizes to exactly `seq` tokens.
pub fn make_input(model: &mut Model, seq: usize) -> Result<BenchInput> {
    let max = model.manifest().max_tokens as usize;
    if seq > max {
        bail!("{seq} tokens is more than the model's {max}");
    }
    let mut words: Vec<&str> = vec!["the", "[MASK]"];
    let count = |model: &mut Model, words: &[&str]| -> Result<usize> {
        Ok(model.encode(&words.join(" "))?.len())
    };
    let mut n = count(model, &words)?;
    if n > seq {
        bail!("{seq} tokens is too short for a sentence with a mask ({n} at least)");
    }
    let mut i = 0usize;
    while n < seq {
        let mut added = false;
        for j in 0..FILLER.len() {
            let w = FILLER[(i + j) % FILLER.len()];
            words.push(w);
            let m = count(model, &words)?;
            if m <= seq && m > n {
                n = m;
                added = true;
                break;
            }
            words.pop();
        }
        if !added {
            bail!("cannot build a text of exactly {seq} tokens with this tokenizer");
        }
        i += 1;
    }
    let text = words.join(" ");
    let ids = model.encode(&text)?.to_vec();
    let mask_id = model.manifest().special_tokens.mask.id;
    let mask_position = ids
        .iter()
        .position(|&t| t == mask_id)
        .context("the mask did not survive tokenization")?;
    let mut model_text = String::new();
    bertling::text::substitute_mask(&text, model.mask_token(), &mut model_text);
    let enc = model
        .tokenizer()
        .encode(model_text.as_str(), true)
        .map_err(|e| anyhow!("tokenizer: {e}"))?;
    Ok(BenchInput {
        seq,
        text,
        model_text,
        ids,
        type_ids: enc.get_type_ids().to_vec(),
        mask_position,
    })
}

pub fn make_inputs(model_path: &Path, seqs: &[usize]) -> Result<BenchInputs> {
    let mut model = Model::load(model_path)?;
    let inputs = seqs
        .iter()
        .map(|&s| make_input(&mut model, s))
        .collect::<Result<Vec<_>>>()?;
    Ok(BenchInputs {
        model: model_path.display().to_string(),
        architecture: model.manifest().architecture.to_string(),
        mask_token: model.mask_token().to_string(),
        inputs,
    })
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in kB, from /proc/self/status; zeros
/// where /proc is missing.
pub fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// What a worker benchmarks: something that answers one input at a time.
pub trait Engine {
    /// Makes the engine ready for inputs of `seq` tokens (untimed; e.g. a plan for a fixed length).
    fn prepare(&mut self, _seq: usize) -> Result<()> {
        Ok(())
    }
    /// Answers one input; returns the top-1 token at the mask.
    fn run(&mut self, input: &BenchInput) -> Result<u32>;
}

struct BertlingEngine {
    model: Model,
    out: FillMask,
    top_k: usize,
}

impl Engine for BertlingEngine {
    fn run(&mut self, input: &BenchInput) -> Result<u32> {
        self.model
            .fill_mask_into(&input.text, self.top_k, &mut self.out)?;
        let top = self
            .out
            .masks
            .first()
            .and_then(|m| m.candidates.first())
            .context("no prediction")?;
        Ok(top.token)
    }
}

#[derive(Deserialize)]
struct Request {
    cmd: String,
    #[serde(default)]
    seq: usize,
    #[serde(default)]
    n: usize,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Loads an engine with `threads` (timed as the load, `prepare` for the first input included) and
/// answers the first input once (timed as the first request).
fn load_engine<E: Engine>(
    first: &BenchInput,
    threads: usize,
    load: &impl Fn(usize) -> Result<E>,
) -> Result<(E, Value)> {
    let t = Instant::now();
    let mut engine = load(threads)?;
    engine.prepare(first.seq)?;
    let load_ms = ms(t);
    let t = Instant::now();
    engine.run(first)?;
    let first_ms = ms(t);
    let (hwm, _) = rss_kb();
    let v = json!({"ok": true, "load_ms": load_ms, "first_ms": first_ms, "rss_load_kb": hwm,
                   "threads": threads, "counting_allocator": CountingAlloc::installed()});
    Ok((engine, v))
}

/// Serves the worker protocol on stdin/stdout. `load(threads)` builds the engine (timed as the
/// load); the first input is then answered once (timed as the first request) before the ready
/// line. `{"cmd":"threads","n":T}` drops the engine and loads it again with T threads (same reply
/// fields as the ready line).
pub fn serve<E: Engine>(
    inputs: &BenchInputs,
    threads: usize,
    load: impl Fn(usize) -> Result<E>,
) -> Result<()> {
    let first = inputs.inputs.first().context("no inputs")?;
    let mut out = crate::output::stdout();
    let (engine, mut ready) = load_engine(first, threads, &load)?;
    let mut engine = Some(engine);
    ready["ready"] = json!(true);
    writeln!(out, "{ready}")?;
    out.flush()?;
    let mut prepared = first.seq;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Err(anyhow!("bad request {line:?}: {e}")),
            Ok(r) if r.cmd == "quit" => break,
            Ok(r) if r.cmd == "threads" => {
                engine = None; // one model in memory at a time
                prepared = first.seq;
                load_engine(first, r.n.max(1), &load).map(|(e, v)| {
                    engine = Some(e);
                    v
                })
            }
            Ok(r) => match engine.as_mut() {
                Some(e) => answer(e, inputs, &r, &mut prepared),
                None => Err(anyhow!("no engine loaded (the last reload failed)")),
            },
        };
        let v = reply.unwrap_or_else(|e| json!({"ok": false, "error": format!("{e:#}")}));
        writeln!(out, "{v}")?;
        out.flush()?;
    }
    Ok(())
}

fn answer<E: Engine>(
    engine: &mut E,
    inputs: &BenchInputs,
    r: &Request,
    prepared: &mut usize,
) -> Result<Value> {
    match r.cmd.as_str() {
        "stats" => {
            let (hwm, rss) = rss_kb();
            Ok(json!({"ok": true, "vmhwm_kb": hwm, "vmrss_kb": rss}))
        }
        "run" | "growth" => {
            let input = inputs.get(r.seq)?;
            if *prepared != r.seq {
                engine.prepare(r.seq)?;
                *prepared = r.seq;
            }
            if r.cmd == "run" {
                let (mut times, mut allocs, mut bytes) = (vec![], vec![], vec![]);
                let mut top1 = 0;
                for _ in 0..r.n.max(1) {
                    let c = Counts::global();
                    let t = Instant::now();
                    top1 = engine.run(input)?;
                    times.push(ms(t));
                    let d = Counts::global().since(&c);
                    allocs.push(d.calls());
                    bytes.push(d.allocated_bytes);
                }
                Ok(json!({"ok": true, "ms": times, "allocs": allocs, "bytes": bytes, "top1": top1}))
            } else {
                let (_, rss_before) = rss_kb();
                let c = Counts::global();
                for _ in 0..r.n {
                    engine.run(input)?;
                }
                let d = Counts::global().since(&c);
                let (_, rss_after) = rss_kb();
                Ok(
                    json!({"ok": true, "n": r.n, "net_bytes": d.net_bytes(), "allocs": d.calls(),
                          "bytes": d.allocated_bytes, "rss_before_kb": rss_before, "rss_after_kb": rss_after}),
                )
            }
        }
        other => bail!("unknown command {other:?}"),
    }
}

/// A worker child process driven over the protocol.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The ready line.
    pub ready: Value,
    /// From spawning the process to its ready line (its first answer), ms.
    pub first_answer_ms: f64,
}

impl Worker {
    pub fn spawn(mut cmd: Command) -> Result<Worker> {
        let t = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?);
        let mut w = Worker {
            child,
            stdin,
            stdout,
            ready: Value::Null,
            first_answer_ms: 0.0,
        };
        w.ready = w.read().context("the worker did not start")?;
        w.first_answer_ms = ms(t);
        Ok(w)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the worker exited");
        }
        let v: Value = serde_json::from_str(&line).context("the worker sent a bad line")?;
        if v["ok"] != json!(true) {
            bail!("worker: {}", v["error"].as_str().unwrap_or("failed"));
        }
        Ok(v)
    }

    pub fn call(&mut self, request: Value) -> Result<Value> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        self.read()
    }

    pub fn quit(mut self) -> Result<()> {
        writeln!(self.stdin, "{}", json!({"cmd": "quit"}))?;
        self.stdin.flush()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median_u64(v: &[u64]) -> u64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len() / 2).copied().unwrap_or(0)
}

#[derive(Serialize)]
struct SeqResult {
    seq: usize,
    runs: usize,
    p50_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    mean_ms: f64,
    allocs_per_request: u64,
    bytes_per_request: u64,
    top1: u32,
}

#[derive(Serialize)]
struct ThreadsResult {
    threads: usize,
    load_ms: f64,
    first_request_ms: f64,
    first_answer_ms: f64,
    rss_after_load_kb: u64,
    peak_rss_kb: u64,
    seqs: Vec<SeqResult>,
    growth: Option<Value>,
}

fn as_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn as_u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn measure(args: &BenchArgs, inputs_path: &Path, threads: usize) -> Result<ThreadsResult> {
    let exe = std::env::current_exe().context("cannot find the bertling binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench")
        .arg(&args.model)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--top-k")
        .arg(args.top_k.to_string())
        .arg("--worker")
        .arg(inputs_path);
    let mut w = Worker::spawn(cmd)?;
    let mut seqs = vec![];
    for &seq in &args.seq {
        if args.warmup > 0 {
            w.call(json!({"cmd": "run", "seq": seq, "n": args.warmup}))?;
        }
        let r = w.call(json!({"cmd": "run", "seq": seq, "n": args.runs.max(1)}))?;
        let mut times = as_f64s(&r["ms"]);
        times.sort_by(f64::total_cmp);
        seqs.push(SeqResult {
            seq,
            runs: times.len(),
            p50_ms: percentile(&times, 50.0),
            p90_ms: percentile(&times, 90.0),
            min_ms: times.first().copied().unwrap_or(f64::NAN),
            mean_ms: times.iter().sum::<f64>() / times.len().max(1) as f64,
            allocs_per_request: median_u64(&as_u64s(&r["allocs"])),
            bytes_per_request: median_u64(&as_u64s(&r["bytes"])),
            top1: r["top1"].as_u64().unwrap_or(0) as u32,
        });
    }
    let growth = match args.seq.iter().min() {
        Some(&seq) if args.growth > 0 => {
            Some(w.call(json!({"cmd": "growth", "seq": seq, "n": args.growth}))?)
        }
        _ => None,
    };
    let stats = w.call(json!({"cmd": "stats"}))?;
    let ready = w.ready.clone();
    let first_answer_ms = w.first_answer_ms;
    w.quit()?;
    Ok(ThreadsResult {
        threads,
        load_ms: ready["load_ms"].as_f64().unwrap_or(f64::NAN),
        first_request_ms: ready["first_ms"].as_f64().unwrap_or(f64::NAN),
        first_answer_ms,
        rss_after_load_kb: ready["rss_load_kb"].as_u64().unwrap_or(0),
        peak_rss_kb: stats["vmhwm_kb"].as_u64().unwrap_or(0),
        seqs,
        growth,
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(inputs) = &args.worker {
        let inputs = BenchInputs::read(inputs)?;
        let threads = args.threads.first().copied().unwrap_or(1);
        let (top_k, model_path) = (args.top_k, args.model.clone());
        return serve(&inputs, threads, |threads| {
            let mut model = Model::load_with(&model_path, &LoadOptions { threads })?;
            for i in &inputs.inputs {
                let ids = model.encode(&i.text)?;
                if ids != i.ids.as_slice() {
                    bail!(
                        "{} tokenizes '{}' differently from the inputs file",
                        model_path.display(),
                        i.text
                    );
                }
            }
            Ok(BertlingEngine {
                model,
                out: FillMask::default(),
                top_k,
            })
        });
    }
    if args.completion_only {
        return bench_completion(&args);
    }
    if args.profile {
        let threads = args.threads.first().copied().unwrap_or(1);
        return crate::profile::run(&args.model, &args.seq, threads, args.runs, args.warmup);
    }
    if args.seq.is_empty() || args.threads.is_empty() {
        bail!("--seq and --threads need at least one value each");
    }
    let inputs = make_inputs(&args.model, &args.seq)?;
    let write = |path: &Path| -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(&inputs)?)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    if let Some(path) = &args.write_inputs {
        return write(path);
    }
    let tmp = std::env::temp_dir().join(format!("bertling-bench-{}.json", std::process::id()));
    write(&tmp)?;
    let results: Result<Vec<_>> = args
        .threads
        .iter()
        .map(|&t| measure(&args, &tmp, t))
        .collect();
    let _ = std::fs::remove_file(&tmp);
    let results = results?;
    let file_bytes = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    if args.json {
        let mut v = json!({"model": args.model.display().to_string(), "file_bytes": file_bytes,
                        "architecture": inputs.architecture, "warmup": args.warmup,
                        "growth_requests": args.growth, "results": results});
        if args.completion {
            v["completion"] = serde_json::to_value(measure_completion(&args)?)?;
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!(
        "{} ({}, {:.1} MB), {} warm-up + {} timed requests per length",
        args.model.display(),
        inputs.architecture,
        file_bytes as f64 / 1e6,
        args.warmup,
        args.runs
    );
    for r in &results {
        outln!(
            "\nthreads {}: load {:.0} ms, first answer {:.0} ms after start (first request {:.1} ms), peak RSS {:.1} MB (after load {:.1} MB)",
            r.threads,
            r.load_ms,
            r.first_answer_ms,
            r.first_request_ms,
            r.peak_rss_kb as f64 / 1024.0,
            r.rss_after_load_kb as f64 / 1024.0
        );
        outln!(
            "{:>5} {:>10} {:>10} {:>10} {:>12} {:>14}",
            "seq",
            "p50 ms",
            "p90 ms",
            "min ms",
            "allocs/req",
            "bytes/req"
        );
        for s in &r.seqs {
            outln!(
                "{:>5} {:>10.2} {:>10.2} {:>10.2} {:>12} {:>14}",
                s.seq,
                s.p50_ms,
                s.p90_ms,
                s.min_ms,
                s.allocs_per_request,
                s.bytes_per_request
            );
        }
        if let Some(g) = &r.growth {
            outln!(
                "heap growth over {} requests: {} bytes (RSS {} -> {} kB)",
                g["n"],
                g["net_bytes"],
                g["rss_before_kb"],
                g["rss_after_kb"]
            );
        }
    }
    if args.completion {
        outln!();
        bench_completion(&args)?;
    }
    Ok(())
}

/// One completion configuration measured over every keystroke of the typed text.
#[derive(Serialize)]
struct CompletionResult {
    max_pieces: usize,
    max_passes: usize,
    keystrokes: usize,
    p50_ms: f64,
    p90_ms: f64,
    max_ms: f64,
    passes_mean: f64,
    passes_max: u32,
    /// Keystrokes whose answer was proven the exact top k within the pass budget.
    exact: usize,
    allocs_per_keystroke: u64,
}

/// `--completion`: types `--completion-text` one character at a time (after up to two untimed
/// rounds) and measures each keystroke's `Model::complete` (k = `--top-k`, at most
/// `--completion-passes` forward passes, words of up to 1, 2 and 3 pieces).
fn measure_completion(args: &BenchArgs) -> Result<Vec<CompletionResult>> {
    use bertling::complete::CompleteOptions;

    let mut model = Model::load(&args.model)?;
    let text = &args.completion_text;
    let prefixes: Vec<&str> = text
        .char_indices()
        .map(|(i, c)| &text[..i + c.len_utf8()])
        .collect();
    let mut results = vec![];
    if prefixes.is_empty() {
        bail!("--completion-text is empty");
    }
    for max_pieces in 1..=3 {
        let options = CompleteOptions {
            k: args.top_k.clamp(1, bertling::complete::MAX_SUGGESTIONS),
            max_pieces,
            max_passes: args.completion_passes.max(max_pieces),
            ..CompleteOptions::default()
        };
        let mut out = bertling::Completion::default();
        for _ in 0..args.warmup.min(2) {
            for p in &prefixes {
                model.complete_into(p, &options, &mut out)?;
            }
        }
        let (mut times, mut passes, mut allocs, mut exact) = (vec![], vec![], vec![], 0);
        for p in &prefixes {
            let c = Counts::global();
            let t = Instant::now();
            model.complete_into(p, &options, &mut out)?;
            times.push(ms(t));
            allocs.push(Counts::global().since(&c).calls());
            passes.push(out.passes);
            exact += usize::from(out.exact);
        }
        times.sort_by(f64::total_cmp);
        results.push(CompletionResult {
            max_pieces,
            max_passes: options.max_passes,
            keystrokes: prefixes.len(),
            p50_ms: percentile(&times, 50.0),
            p90_ms: percentile(&times, 90.0),
            max_ms: times.last().copied().unwrap_or(f64::NAN),
            passes_mean: passes.iter().map(|&p| p as f64).sum::<f64>() / passes.len().max(1) as f64,
            passes_max: passes.iter().copied().max().unwrap_or(0),
            exact,
            allocs_per_keystroke: median_u64(&allocs),
        });
    }
    Ok(results)
}

/// `--completion` / `--completion-only`: measures and prints (JSON with `--json`).
fn bench_completion(args: &BenchArgs) -> Result<()> {
    let results = measure_completion(args)?;
    let text = &args.completion_text;
    if args.json {
        let v = json!({"model": args.model.display().to_string(), "completion_text": text,
                       "completion": results});
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let keystrokes = results.first().map_or(0, |r| r.keystrokes);
    outln!(
        "completion, 1 thread: {:?} typed one character at a time ({} keystrokes), k = {}",
        text,
        keystrokes,
        args.top_k
    );
    outln!(
        "{:>10} {:>10} {:>10} {:>10} {:>12} {:>11} {:>7} {:>12}",
        "max pieces",
        "p50 ms",
        "p90 ms",
        "max ms",
        "passes mean",
        "passes max",
        "exact",
        "allocs/key"
    );
    for r in &results {
        outln!(
            "{:>10} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>11} {:>7} {:>12}",
            r.max_pieces,
            r.p50_ms,
            r.p90_ms,
            r.max_ms,
            r.passes_mean,
            r.passes_max,
            format!("{}/{}", r.exact, r.keystrokes),
            r.allocs_per_keystroke
        );
    }
    Ok(())
}
