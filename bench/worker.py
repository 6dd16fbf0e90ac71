"""Benchmark worker for the Python engines: onnxruntime (`ort`) and the PyTorch fill-mask pipeline
(`torch`). Speaks the worker protocol of `bertling bench` (tools/src/bench.rs) on stdin/stdout:
loads, answers the first input once, prints a ready line, then answers JSON commands
(`run`, `stats`, `quit`; `growth` is bertling-only: the counting allocator lives in Rust).

    python bench/worker.py ort   --model DIR_OR_ONNX --inputs inputs.json --threads 1
    python bench/worker.py torch --model HF_MODEL_DIR --inputs inputs.json --threads 1

onnxruntime gets the token ids bertling's tokenizer produced (from the inputs file) and runs the
forward pass; the pipeline gets the text (with the model's mask token) and runs all of
tokenize + forward + post-process, as its users call it; its tokenizer's ids are checked against
the inputs file first.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time


def rss_kb() -> tuple[int, int]:
    hwm = rss = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return hwm, rss


class OrtEngine:
    def __init__(self, model: str, threads: int, inputs: dict):
        import numpy as np
        import onnxruntime as ort

        self.np = np
        path = os.path.join(model, "model.onnx") if os.path.isdir(model) else model
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = [i.name for i in self.sess.get_inputs()]
        self.feeds = {}
        for inp in inputs["inputs"]:
            ids = np.asarray([inp["ids"]], dtype=np.int64)
            feeds = {"input_ids": ids}
            if "attention_mask" in names:
                feeds["attention_mask"] = np.ones_like(ids)
            if "token_type_ids" in names:
                feeds["token_type_ids"] = np.asarray([inp["type_ids"]], dtype=np.int64)
            self.feeds[inp["seq"]] = feeds

    def run(self, inp: dict) -> int:
        logits = self.sess.run(["logits"], self.feeds[inp["seq"]])[0]
        return int(self.np.argmax(logits[0, inp["mask_position"]]))


class TorchEngine:
    def __init__(self, model: str, threads: int, inputs: dict):
        import warnings

        warnings.filterwarnings("ignore")
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.pipe = pipeline("fill-mask", model=model, tokenizer=model, device="cpu", dtype=torch.float32)
        for inp in inputs["inputs"]:
            ids = self.pipe.tokenizer(inp["model_text"])["input_ids"]
            if list(ids) != inp["ids"]:
                raise ValueError(f"the pipeline's tokenizer gives other ids for {inp['model_text']!r}")

    def run(self, inp: dict) -> int:
        out = self.pipe(inp["model_text"], top_k=5)
        return int(out[0]["token"])


def deny_amx() -> None:
    """Makes `arch_prctl(ARCH_REQ_XCOMP_PERM, ...)` fail for this process (a seccomp filter), so
    onnxruntime cannot have the AMX tile state and takes its AVX512-VNNI int8 path: the int8
    products of a CPU with VNNI and no AMX (AMD's Zen 4, Intel before Sapphire Rapids)."""
    import ctypes
    import struct

    sys_arch_prctl, arch_req_xcomp_perm, eperm = 158, 0x1023, 1
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    seccomp_ret_errno, seccomp_ret_allow = 0x00050000, 0x7FFF0000
    # struct seccomp_data: nr at 0, arch at 4, instruction_pointer at 8, args[0] at 16 (low half).
    program = [
        (ld_w_abs, 0, 0, 0),
        (jeq_k, 0, 3, sys_arch_prctl),
        (ld_w_abs, 0, 0, 16),
        (jeq_k, 0, 1, arch_req_xcomp_perm),
        (ret_k, 0, 0, seccomp_ret_errno | eperm),
        (ret_k, 0, 0, seccomp_ret_allow),
    ]
    code = b"".join(struct.pack("=HBBI", *op) for op in program)
    buf = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(program), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0 or libc.prctl(
            pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter that denies AMX")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["ort", "torch"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deny-amx", action="store_true", help="onnxruntime without AMX (deny_amx)")
    args = ap.parse_args()
    with open(args.inputs) as f:
        inputs = json.load(f)
    by_seq = {i["seq"]: i for i in inputs["inputs"]}
    out = sys.stdout

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        if args.deny_amx:
            deny_amx()
        # Libraries are imported before the clock starts: load time is the model's alone (the time
        # to first answer, measured by the harness from the process spawn, includes the imports).
        if args.engine == "ort":
            import numpy  # noqa: F401
            import onnxruntime  # noqa: F401
        else:
            import torch  # noqa: F401
            import transformers  # noqa: F401
            from transformers import pipeline  # noqa: F401
        cls = OrtEngine if args.engine == "ort" else TorchEngine
        first = inputs["inputs"][0]

        def load(threads: int):
            t = time.perf_counter()
            engine = cls(args.model, threads, inputs)
            load_ms = (time.perf_counter() - t) * 1e3
            t = time.perf_counter()
            engine.run(first)
            first_ms = (time.perf_counter() - t) * 1e3
            return engine, {"ok": True, "load_ms": load_ms, "first_ms": first_ms, "rss_load_kb": rss_kb()[0],
                            "threads": threads, "counting_allocator": False}

        engine, ready = load(args.threads)
    except Exception as e:  # reported to the harness, which prints it in the table
        send({"ok": False, "error": f"{type(e).__name__}: {e}"})
        return 1
    send(dict(ready, ready=True))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                break
            if cmd == "threads":
                engine = None  # one model in memory at a time
                gc.collect()
                engine, reply = load(max(1, int(req.get("n", 1))))
                send(reply)
            elif cmd == "stats":
                hwm, rss = rss_kb()
                send({"ok": True, "vmhwm_kb": hwm, "vmrss_kb": rss})
            elif cmd == "run":
                inp = by_seq[req["seq"]]
                times, top1 = [], 0
                for _ in range(max(1, int(req.get("n", 1)))):
                    t = time.perf_counter()
                    top1 = engine.run(inp)
                    times.append((time.perf_counter() - t) * 1e3)
                send({"ok": True, "ms": times, "top1": top1})
            else:
                send({"ok": False, "error": f"unsupported command {cmd!r}"})
        except Exception as e:
            send({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
