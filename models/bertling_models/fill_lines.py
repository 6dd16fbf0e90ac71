"""Texts through a compiled bertling file with ``bertling-run fill-lines``: one model load, one JSON
string line in and one JSON line out per request (input ids, and per mask its top-k and full logits)."""
from __future__ import annotations

import json
import subprocess
import threading


def fill_lines(run_bin: str, model: str, texts: list[str], top_k: int = 5) -> list[dict]:
    """Every text through one ``bertling-run fill-lines`` process; the parsed output lines, in order."""
    p = subprocess.Popen([run_bin, "fill-lines", model, "-k", str(top_k)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    feeder = threading.Thread(target=lambda: (p.stdin.write("".join(json.dumps(t) + "\n" for t in texts)),
                                              p.stdin.close()))
    feeder.start()
    out = [json.loads(line) for line in p.stdout]
    feeder.join()
    err = p.stderr.read()
    if p.wait() != 0 or len(out) != len(texts):
        raise RuntimeError(f"fill-lines on {model}: exit {p.returncode}, {len(out)}/{len(texts)} lines\n{err}")
    return out
