"""The cross-engine benchmark: bertling (fp32, and int8 once `bertling compile --precision int8`
exists) beside onnxruntime fp32 and its quantize_dynamic int8, the PyTorch `pipeline('fill-mask')`
and plain tract-onnx on the raw export, on the same machine in one session, runs alternating
between engines. Writes BENCHMARKS.md and a JSON of every timing.

    scripts/bench.sh            # what to run (installs, builds, then calls this)
    .venv/bin/python bench/run.py --bin target/release/bertling [--models albert,distilbert] ...

Every engine runs in its own worker process (peak RSS is that process's VmHWM), speaking the JSON
lines protocol of tools/src/bench.rs. All workers of one (model, thread count) are loaded one after
the other, then for each sequence length every engine gets `--warmup` untimed requests and then
`--runs` rounds, the engine order rotating every round, so that load from other processes on this
shared machine falls on all engines alike. In a round each engine answers `--block` + 1 requests
back to back and the first is not timed: an engine's first request after another engine ran pays
for the other's threads (onnxruntime's spin after a run) and for waking its own sleeping ones,
which timed alone it does not; one timed request per round made 2-thread figures depend on which
engine ran before (BENCHMARKS.md, "How the engines are timed").
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "models"))
sys.path.insert(0, HERE)

import prepare  # noqa: E402

PY = sys.executable
BASE_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bertling", "base")
BENCH_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bertling", "bench")
LABEL = {"albert": "ALBERT-base", "distilbert": "DistilBERT-base", "bert": "BERT-base (cased)",
         "roberta": "RoBERTa-base"}


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kw) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return r.stdout


def newer(target: str, *sources: str) -> bool:
    """True if target exists and is newer than every source."""
    if not os.path.exists(target):
        return False
    t = os.path.getmtime(target)
    return all(os.path.getmtime(s) <= t for s in sources if os.path.exists(s))


class Worker:
    def __init__(self, name: str, cmd: list, env=None, log_path=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w") if log_path else subprocess.DEVNULL
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1, env=env)
        self.ready = self._read()
        self.first_answer_ms = (time.perf_counter() - t) * 1e3

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            err = ""
            if self.log_path:
                with open(self.log_path) as f:
                    err = f.read()[-1500:]
            raise RuntimeError(f"{self.name}: worker exited: {err}")
        v = json.loads(line)
        if not v.get("ok"):
            raise RuntimeError(f"{self.name}: {v.get('error')}")
        return v

    def call(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write('{"cmd":"quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def pct(values, p):
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(1, min(len(s), -(-len(s) * p // 100)))
    return s[int(k) - 1]


def compile_precisions(binary: str) -> tuple[list, bool]:
    """Precisions `bertling compile` accepts, and whether it has the --precision flag at all."""
    help_text = run([binary, "compile", "--help"])
    if "--precision" not in help_text:
        return ["fp32"], False
    found = [p for p in ("fp32", "int8") if p in help_text]
    return found or ["fp32"], True


def prepare_model(arch: str, binary: str, precisions: list, has_flag: bool, seqs: list, status: dict) -> dict:
    export = os.path.join(BASE_CACHE, arch)
    if not os.path.exists(os.path.join(export, "model.onnx")):
        log(f"{arch}: building the base export with torch (build-base)")
        env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "models"))
        run([PY, "-m", "bertling_models", "build-base", "--arch", arch], env=env, cwd=REPO)
    cache = os.path.join(BENCH_CACHE, arch)
    os.makedirs(cache, exist_ok=True)
    onnx_path = os.path.join(export, "model.onnx")
    out = {"export": export, "bertling": {}, "bertling_missing": {}}
    for prec in ("fp32", "int8"):
        if prec not in precisions:
            out["bertling_missing"][prec] = "not yet available (`bertling compile` has no `--precision int8`)"
            continue
        path = os.path.join(cache, f"{prec}.bertling")
        if not newer(path, onnx_path, binary):
            log(f"{arch}: bertling compile ({prec})")
            cmd = [binary, "compile", export, "-o", path] + (["--precision", prec] if has_flag else [])
            t = time.perf_counter()
            try:
                run(cmd)
            except RuntimeError as e:
                out["bertling_missing"][prec] = f"compile failed: {str(e).strip().splitlines()[-1][:200]}"
                continue
            status.setdefault("compile_s", {})[f"{arch} {prec}"] = round(time.perf_counter() - t, 1)
        out["bertling"][prec] = path
    ort8 = os.path.join(cache, "ort-int8")
    if not newer(os.path.join(ort8, "meta.json"), onnx_path):
        log(f"{arch}: onnxruntime quantize_dynamic (Identity rewiring first)")
        prepare.quantize_ort_int8(export, ort8)
    with open(os.path.join(ort8, "meta.json")) as f:
        out["ort_int8_meta"] = json.load(f)
    out["ort_int8"] = ort8
    tdir = os.path.join(cache, "torch")
    if not newer(os.path.join(tdir, "bench_meta.json"), onnx_path):
        log(f"{arch}: saving the PyTorch model for the pipeline")
        prepare.torch_model_dir(arch, export, tdir)
    with open(os.path.join(tdir, "bench_meta.json")) as f:
        out["torch_meta"] = json.load(f)
    out["torch"] = tdir
    inputs = os.path.join(cache, "inputs.json")
    run([binary, "bench", out["bertling"]["fp32"], "--seq", ",".join(map(str, seqs)), "--write-inputs", inputs])
    out["inputs"] = inputs
    return out


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX int8 (onnxruntime and bertling then multiply int8 on tiles)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " amx_int8" in line for line in f)
    except OSError:
        return False


def engines_for(arch_info: dict, binary: str, threads: int) -> list:
    inputs = arch_info["inputs"]
    e = []
    for prec in ("fp32", "int8"):
        if prec in arch_info["bertling"]:
            e.append((f"bertling {prec}", prec, [binary, "bench", arch_info["bertling"][prec], "--threads",
                                                  str(threads), "--worker", inputs]))
        else:
            e.append((f"bertling {prec}", prec, arch_info["bertling_missing"][prec]))
    e.append(("onnxruntime fp32", "fp32", [PY, os.path.join(HERE, "worker.py"), "ort", "--model",
                                           arch_info["export"], "--inputs", inputs, "--threads", str(threads)]))
    e.append(("onnxruntime int8", "int8", [PY, os.path.join(HERE, "worker.py"), "ort", "--model",
                                           arch_info["ort_int8"], "--inputs", inputs, "--threads", str(threads)]))
    if cpu_has_amx():
        # What a CPU with AVX512-VNNI and no AMX runs (AMD's Zen 4, the project's reference machine):
        # onnxruntime denied the tile state, bertling told to use its 512-bit VNNI kernel.
        e.append(("onnxruntime int8, AMX denied", "int8", [PY, os.path.join(HERE, "worker.py"), "ort", "--model",
                                                           arch_info["ort_int8"], "--inputs", inputs, "--threads",
                                                           str(threads), "--deny-amx"]))
        if "int8" in arch_info["bertling"]:
            e.append(("bertling int8, VNNI kernel", "int8",
                      ["env", "BERTLING_A8_KERNEL=bertling_a8_avx512vnni", binary, "bench",
                       arch_info["bertling"]["int8"], "--threads", str(threads), "--worker", inputs]))
    e.append(("PyTorch pipeline fp32", "fp32", [PY, os.path.join(HERE, "worker.py"), "torch", "--model",
                                                arch_info["torch"], "--inputs", inputs, "--threads", str(threads)]))
    e.append(("tract-onnx fp32", "fp32", [binary, "bench-onnx", arch_info["export"], "--inputs", inputs,
                                          "--threads", str(threads)]))
    return e


def file_mb(path: str) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                   if f.endswith((".onnx", ".safetensors", ".bin"))) / 1e6
    return os.path.getsize(path) / 1e6


def time_seq(arch, threads, seq, workers, args):
    """Warm-up, then alternating timed rounds, for one sequence length; fills row["seqs"][seq]."""
    round_ms = 0.0
    for w, row in workers:
        try:
            if args.warmup:
                warm = w.call(cmd="run", seq=seq, n=args.warmup)["ms"]
                round_ms += statistics.median(warm) * (args.block + 1) + args.pause * 1e3
            row["seqs"][seq] = {"ms": [], "allocs": [], "bytes": []}
        except Exception as e:
            row["seqs"][seq] = {"error": str(e)[:300]}
    # The time budget: what is left until the deadline, shared by the sets still to measure.
    args.sets_left -= 1
    per_set_s = max(0.0, args.deadline - time.time()) / max(1, args.sets_left + 1)
    rounds = args.runs
    if round_ms > 0:
        rounds = int(max(args.min_runs, min(args.runs, per_set_s * 1e3 // round_ms)))
    for r in range(rounds):
        k = r % len(workers) if workers else 0
        for w, row in workers[k:] + workers[:k]:
            s = row["seqs"][seq]
            if "error" in s:
                continue
            try:
                res = w.call(cmd="run", seq=seq, n=args.block + 1)
            except Exception as e:
                s["error"] = str(e)[:300]
                continue
            s["ms"] += res["ms"][1:]
            s["allocs"] += res.get("allocs", [])[1:]
            s["bytes"] += res.get("bytes", [])[1:]
            s["top1"] = res.get("top1")
            time.sleep(args.pause)  # let spinning thread pools of the previous engine go idle
    log(f"{arch} {threads}T seq {seq} ({rounds} rounds): " + ", ".join(
        f"{row['engine']} {statistics.median(row['seqs'][seq]['ms']):.1f}" for _, row in workers
        if row["seqs"][seq].get("ms")))


def measure(arch: str, info: dict, binary: str, args) -> list:
    """All engines of one model, one worker process each, loaded one after the other with the first
    thread count; then every thread count in turn (workers reload with it: `threads` command)."""
    rows = []
    workers = []  # (worker, row of the current thread count)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "models"))
    logs = os.path.join(os.path.dirname(args.json_out), "logs")
    os.makedirs(logs, exist_ok=True)
    threads0 = args.threads[0]
    for name, prec, cmd in engines_for(info, binary, threads0):
        row = {"arch": arch, "engine": name, "precision": prec, "threads": threads0, "seqs": {}}
        rows.append(row)
        if isinstance(cmd, str):
            row["missing"] = cmd
            for t in args.threads[1:]:
                rows.append(dict(row, threads=t, seqs={}))
            continue
        log(f"{arch}: loading {name}")
        try:
            w = Worker(name, cmd, env=env, log_path=os.path.join(logs, f"{arch}-{name.replace(' ', '-')}.log"))
        except Exception as e:
            row["missing"] = f"failed: {str(e)[:300]}"
            log(row["missing"])
            continue
        row.update(load_ms=w.ready["load_ms"], first_request_ms=w.ready["first_ms"],
                   first_answer_ms=w.first_answer_ms, rss_load_kb=w.ready["rss_load_kb"])
        # The model follows `bench` / `bench-onnx` (bertling, tract) or `--model` (workers).
        after = "--model" if "--model" in cmd else next(c for c in cmd if c in ("bench", "bench-onnx"))
        row["model_path"] = cmd[cmd.index(after) + 1]
        row["file_mb"] = file_mb(row["model_path"])
        workers.append((w, row))
    spawned = [w for w, _ in workers]
    for ti, threads in enumerate(args.threads):
        if ti > 0:
            current = []
            for w, prev in workers:
                row = {k: prev[k] for k in ("arch", "engine", "precision", "model_path", "file_mb")}
                row.update(threads=threads, seqs={})
                rows.append(row)
                try:
                    r = w.call(cmd="threads", n=threads)
                    row.update(load_ms=r["load_ms"], first_request_ms=r["first_ms"])
                    current.append((w, row))
                except Exception as e:
                    row["missing"] = f"failed: {str(e)[:300]}"
            workers_t = current
        else:
            workers_t = workers
        for seq in args.seq:
            time_seq(arch, threads, seq, workers_t, args)
        for w, row in workers_t:
            try:
                if row["engine"].startswith("bertling") and args.growth and ti == 0:
                    row["growth"] = w.call(cmd="growth", seq=min(args.seq), n=args.growth)
                row["peak_rss_kb"] = w.call(cmd="stats")["vmhwm_kb"]
            except Exception as e:
                row["missing"] = f"failed: {str(e)[:300]}"
        workers = workers_t
    for w in spawned:
        w.close()
    for row in rows:
        for seq, s in row["seqs"].items():
            if s.get("ms"):
                s["p50"] = pct(s["ms"], 50)
                s["p90"] = pct(s["ms"], 90)
                if s["allocs"]:
                    s["allocs_per_request"] = statistics.median(s["allocs"])
                    s["bytes_per_request"] = statistics.median(s["bytes"])
    return rows


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""


def fmt_ms(v: float) -> str:
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def reference_row(rows, row):
    want = "onnxruntime int8" if row["precision"] == "int8" else "onnxruntime fp32"
    for r in rows:
        if r["arch"] == row["arch"] and r["threads"] == row["threads"] and r["engine"] == want:
            return r
    return None


def render(results: dict, args, cmdline: str) -> str:
    rows = results["rows"]
    m = []
    m.append("# Benchmarks\n")
    m.append("Generated by this one command (`scripts/bench.sh` with no options measures all four models):\n")
    m.append(f"```sh\n{cmdline}\n```\n")
    env = results["env"]
    m.append(f"- Date: {env['date']} (took {results['elapsed_min']:.1f} min, of which measuring "
             f"{results['measure_min']:.1f} min); commit `{env['commit']}`")
    m.append(f"- CPU: {env['cpu']} ({env['cores']} cores), {env['mem']}")
    m.append(f"- CPU flags: `{env['flags']}`")
    m.append(f"- Load average (1/5/15 min) before: {env['load_before']}; after: {env['load_after']}. "
             "The machine may be a shared virtual machine (its neighbours' load does not show in these "
             "figures), so absolute times are noisy. **Compare ratios** (measured side by side, "
             "runs alternating between engines), not absolute times.")
    m.append(f"- Versions: bertling {env['bertling']}, tract 0.23.9, onnxruntime {env['onnxruntime']}, "
             f"torch {env['torch']}, transformers {env['transformers']}, Python {env['python']}")
    m.append(f"- Runs: per model, thread count and sequence length, {args.warmup} warm-up requests per engine, "
             f"then up to {args.runs} rounds in which each engine answers {args.block + 1} requests back to back "
             f"and the last {args.block} are timed (engine order rotating each round); "
             f"rounds are cut, down to {args.min_runs}, to keep measuring within {args.budget_min:g} minutes "
             "(the timed requests are counted under each model). p50/p90 are nearest-rank percentiles of those.")
    m.append("")
    m.append("## What is measured\n")
    m.append("| engine | one request is | model |")
    m.append("|---|---|---|")
    m.append("| bertling fp32 / int8 | `Model::fill_mask_into(text, 5)`: tokenize, forward, softmax + top-5 at the mask | `bertling compile` of the export (`--precision` when the compiler has it) |")
    m.append("| onnxruntime fp32 | `session.run` on bertling's token ids (forward only) + argmax at the mask; `intra_op_num_threads` = threads, `inter_op_num_threads=1`, all graph optimizations | the raw export `model.onnx` |")
    m.append("| onnxruntime int8 | the same | `quantize_dynamic(weight_type=QInt8)` of the export, after rewiring `Identity(initializer)` nodes (see below) |")
    m.append("| PyTorch pipeline fp32 | `pipeline('fill-mask')(text, top_k=5)`: tokenize, forward, post-process (the usual baseline); `torch.set_num_threads` | the same Hugging Face model rebuilt from its seed (identical weights), `save_pretrained` |")
    m.append("| tract-onnx fp32 | plain tract-onnx 0.23.9 on the raw export: `with_ignore_value_info(true)`, input facts fixed to `[1, seq]`, `into_optimized`, the runtime's executor; forward + argmax | the raw export `model.onnx` |")
    m.append("")
    m.append("All engines get the same token ids: texts are built to tokenize to exactly `seq` tokens (special "
             "tokens included, one mask) with bertling's tokenizer; onnxruntime and tract-onnx are fed those ids; "
             "the pipeline's own tokenizer is checked to give the same ids before it is timed.")
    m.append("- **load**: in the worker process, from nothing to a model ready to answer (bertling: `Model::load_with`; "
             "onnxruntime: `InferenceSession`; PyTorch: `pipeline(...)`; tract-onnx: parse + optimize + plan for the first length).")
    m.append("- **first answer**: from spawning the process to its first answer (seq "
             f"{args.seq[0]}), interpreter start and imports included. One worker process per engine and model serves "
             "every thread count: it starts with the first, then drops its model and loads it again for the next "
             "(`(reload)` rows; their load time is that reload, libraries already imported).")
    m.append("- **peak RSS**: the worker process's VmHWM after that thread count's requests (cumulative over the "
             "process: later thread counts include the earlier peaks). Python workers include the "
             "interpreter and libraries (tens of MB for numpy + onnxruntime, several hundred MB for torch).")
    m.append("- **×ORT**: p50 divided by onnxruntime's p50 at the same length and thread count (int8 rows: "
             "onnxruntime int8; all others: onnxruntime fp32). Below 1 is faster than onnxruntime.")
    m.append("")
    m.append("The models are the base-size exports `python -m bertling_models build-base` makes: random-init "
             "Hugging Face models of the real base shapes (albert-base-v2, distilbert-base-uncased, bert-base-cased, "
             "roberta-base). Random weights time the same as trained ones.")
    m.append("")
    for arch in results["archs"]:
        info = results["models"][arch]
        m.append(f"## {LABEL.get(arch, arch)}\n")
        q = info.get("ort_int8_meta", {})
        if q:
            m.append(f"onnxruntime int8: {q['matmuls_quantized']} of {q['matmuls_in_export']} MatMuls quantized "
                     f"({q['identity_nodes_rewired']} Identity nodes rewired first), {q['bytes'] / 1e6:.1f} MB.\n")
        head = "| engine | threads | file MB | load ms | first answer ms | peak RSS MB | " + " | ".join(
            f"seq {s}: p50 / p90 ms (×ORT)" for s in args.seq) + " |"
        m.append(head)
        m.append("|" + "---|" * (6 + len(args.seq)))
        for row in rows:
            if row["arch"] != arch:
                continue
            cells = [row["engine"], str(row["threads"])]
            if row.get("missing") and "load_ms" not in row:
                cells += [row["missing"]] + [""] * (3 + len(args.seq))
                m.append("| " + " | ".join(cells) + " |")
                continue
            first = fmt_ms(row["first_answer_ms"]) if "first_answer_ms" in row else "(reload)"
            cells += [f"{row.get('file_mb', 0):.0f}", fmt_ms(row["load_ms"]), first,
                      f"{row.get('peak_rss_kb', 0) / 1024:.0f}"]
            ref = reference_row(rows, row)
            for seq in args.seq:
                s = row["seqs"].get(seq, {})
                if "p50" not in s:
                    cells.append(s.get("error", "—")[:60])
                    continue
                c = f"{fmt_ms(s['p50'])} / {fmt_ms(s['p90'])}"
                rs = ref["seqs"].get(seq, {}) if ref else {}
                if "p50" in rs and ref is not row:
                    c += f" ({s['p50'] / rs['p50']:.2f}×)"
                cells.append(c)
            m.append("| " + " | ".join(cells) + " |")
        m.append("")
        brows = [r for r in rows if r["arch"] == arch and r["engine"].startswith("bertling") and "load_ms" in r]
        if brows:
            m.append("bertling heap use per request (counting allocator; allocation calls / bytes requested, median):\n")
            m.append("| engine | threads | " + " | ".join(f"seq {s}" for s in args.seq) + " | heap growth |")
            m.append("|" + "---|" * (3 + len(args.seq)))
            for r in brows:
                cells = [r["engine"], str(r["threads"])]
                for seq in args.seq:
                    s = r["seqs"].get(seq, {})
                    if "allocs_per_request" in s:
                        cells.append(f"{s['allocs_per_request']:.0f} / {s['bytes_per_request'] / 1e6:.2f} MB")
                    else:
                        cells.append("—")
                g = r.get("growth")
                cells.append(f"{g['net_bytes']} bytes over {g['n']} requests (seq {min(args.seq)})" if g else "—")
                m.append("| " + " | ".join(cells) + " |")
            m.append("")
        counts = []
        for threads in args.threads:
            ref = next((r for r in rows if r["arch"] == arch and r["threads"] == threads
                        and r["engine"] == "onnxruntime fp32"), None)
            if ref:
                counts.append(f"{threads} thread{'s' if threads > 1 else ''}: " + ", ".join(
                    f"seq {q} n={len(ref['seqs'].get(q, {}).get('ms', []))}" for q in args.seq))
        if counts:
            m.append("Timed requests per engine: " + "; ".join(counts) + ".\n")
        agree = results["agreement"].get(arch)
        if agree:
            m.append(f"Top-1 at the mask, fp32 engines: {agree}\n")
    m.append("## Notes\n")
    if any("not yet" in str(v) for info in results.get("models", {}).values()
           for v in (info.get("bertling_missing", {}) if isinstance(info, dict) else {}).values()):
        m.append("- bertling int8 rows say *not yet available* when `bertling compile` has no `--precision int8`; "
                 "the harness probes `bertling compile --help` and adds them by itself.")
    m.append("- onnxruntime int8 of ALBERT: the exporter reaches ALBERT's shared layer weights through `Identity` "
             "nodes, which `quantize_dynamic` does not follow; `bench/prepare.py` rewires every "
             "`Identity(initializer)` consumer to the initializer first (done for every model; it changes nothing "
             "where there are none).")
    m.append("- The PyTorch pipeline time includes its tokenization and post-processing, as bertling's includes its "
             "own; onnxruntime and tract-onnx rows are the forward pass alone (their callers would add a tokenizer).")
    m.append("- Raw timings: `target/bench/results.json`.")
    for k, v in results.get("status", {}).items():
        m.append(f"- {k}: {v}")
    return "\n".join(m) + "\n"


def environment() -> dict:
    import onnxruntime

    try:
        import torch
        import transformers

        tv, trv = torch.__version__, transformers.__version__
    except ImportError:
        tv = trv = "missing"
    lscpu = sh("lscpu")

    def field(name):
        for line in lscpu.splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        return "?"

    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": sh(f"git -C {REPO} rev-parse --short HEAD") + (" (+ uncommitted changes)" if sh(
            f"git -C {REPO} status --porcelain --untracked-files=no") else ""),
        "cpu": field("Model name"), "cores": os.cpu_count(), "flags": field("Flags"),
        "mem": f"{mem} GB RAM" if mem else "",
        "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "onnxruntime": onnxruntime.__version__, "torch": tv, "transformers": trv,
        "python": platform.python_version(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "bertling"))
    ap.add_argument("--models", default="albert,distilbert,bert,roberta")
    ap.add_argument("--seq", default="8,16,64,128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--min-runs", type=int, default=7, help="timed rounds at least, whatever the budget")
    ap.add_argument("--budget-min", type=float, default=18.0,
                    help="minutes for measuring: rounds per length are cut (down to --min-runs) to fit")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--growth", type=int, default=1000, help="bertling requests for heap growth (first thread count)")
    ap.add_argument("--block", type=int, default=4,
                    help="timed requests per engine and round, after one untimed (module doc)")
    ap.add_argument("--pause", type=float, default=0.005, help="seconds between two timed requests")
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--json-out", default=os.path.join(REPO, "target", "bench", "results.json"))
    ap.add_argument("--command", default=None, help="the command line to record in BENCHMARKS.md")
    args = ap.parse_args()
    args.seq = [int(s) for s in args.seq.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    archs = [a for a in args.models.split(",") if a]
    binary = os.path.abspath(args.bin)
    # scripts/bench.sh sets this before installing and building: the time it reports is all of it.
    t0 = float(os.environ.get("BERTLING_BENCH_T0", time.time()))
    env = environment()
    env["bertling"] = run([binary, "--version"]).split()[-1]
    precisions, has_flag = compile_precisions(binary)
    log(f"bertling compile precisions: {precisions}")
    status: dict = {}
    models = {}
    for arch in archs:
        models[arch] = prepare_model(arch, binary, precisions, has_flag, args.seq, status)
    t1 = time.time()
    args.deadline = t1 + args.budget_min * 60
    args.sets_left = len(archs) * len(args.threads) * len(args.seq)
    rows = []
    for arch in archs:
        rows += measure(arch, models[arch], binary, args)
    agreement = {}
    for arch in archs:
        parts = []
        for seq in args.seq:
            tops = {r["engine"]: r["seqs"].get(seq, {}).get("top1") for r in rows
                    if r["arch"] == arch and r["precision"] == "fp32" and r["threads"] == args.threads[0]}
            tops = {k: v for k, v in tops.items() if v is not None}
            if tops:
                same = len(set(tops.values())) == 1
                parts.append(f"seq {seq}: " + ("all " + str(next(iter(tops.values()))) if same else
                                                ", ".join(f"{k} {v}" for k, v in tops.items())))
        agreement[arch] = "; ".join(parts)
    env["load_after"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    status = {f"bertling compile time ({k})": f"{v} s" for k, v in status.get("compile_s", {}).items()}
    results = {"env": env, "archs": archs, "models": models, "rows": rows, "agreement": agreement,
               "status": status, "elapsed_min": (time.time() - t0) / 60, "measure_min": (time.time() - t1) / 60,
               "args": {k: v for k, v in vars(args).items()}}
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    cmdline = args.command or " ".join(["python", "bench/run.py"] + sys.argv[1:])
    md = render(results, args, cmdline)
    md += kept_sections(args.out, md)
    with open(args.out, "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {args.out} and {args.json_out} in {(time.time() - t0) / 60:.1f} min")
    return 0


def kept_sections(path: str, generated: str) -> str:
    """The `## ` sections of the existing file that this harness does not write (figures other
    commands produced, e.g. int8 accuracy, the aarch64 binary size), to append unchanged."""
    if not os.path.exists(path):
        return ""
    mine = {line for line in generated.splitlines() if line.startswith("## ")}
    out, keep = [], False
    with open(path) as f:
        for line in f.read().splitlines():
            if line.startswith("## "):
                keep = line not in mine
            elif line.startswith("# "):
                keep = False
            if keep:
                out.append(line)
    return ("\n" + "\n".join(out) + "\n") if out else ""


if __name__ == "__main__":
    sys.exit(main())
