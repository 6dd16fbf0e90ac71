"""onnxruntime (CPU) on an export: torch-free, used by CI live tests."""
from __future__ import annotations

import os

import numpy as np

_SESSIONS: dict = {}


def session(model_dir: str):
    import onnxruntime as ort

    path = os.path.join(model_dir, "model.onnx")
    key = (os.path.abspath(path), os.path.getmtime(path))
    if key not in _SESSIONS:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def load_tokenizer(model_dir: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))


def feeds_for(sess, batch_ids: np.ndarray, attention_mask: np.ndarray | None = None, type_ids: np.ndarray | None = None):
    names = [i.name for i in sess.get_inputs()]
    feeds = {"input_ids": batch_ids.astype(np.int64)}
    if "attention_mask" in names:
        feeds["attention_mask"] = (np.ones_like(batch_ids) if attention_mask is None else attention_mask).astype(np.int64)
    if "token_type_ids" in names:
        feeds["token_type_ids"] = (np.zeros_like(batch_ids) if type_ids is None else type_ids).astype(np.int64)
    return feeds


def run_logits(model_dir: str, input_ids, attention_mask=None, type_ids=None) -> np.ndarray:
    """Logits [batch, seq, vocab] for already-tokenized input (2-D or 1-D ids)."""
    sess = session(model_dir)
    ids = np.asarray(input_ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[None, :]
        attention_mask = None if attention_mask is None else np.asarray(attention_mask)[None, :]
        type_ids = None if type_ids is None else np.asarray(type_ids)[None, :]
    return sess.run(["logits"], feeds_for(sess, ids, attention_mask, type_ids))[0]


def mask_token_id(tok) -> int:
    for t in ("[MASK]", "<mask>"):
        i = tok.token_to_id(t)
        if i is not None:
            return i
    raise ValueError("no mask token")


def ort_mask_logits(model_dir: str, text: str):
    """Tokenize ``text`` with the export's tokenizer.json (special tokens added) and run onnxruntime CPU.

    Returns ``(input_ids, {position: logits ndarray [vocab]})`` for every mask position.
    """
    tok = load_tokenizer(model_dir)
    enc = tok.encode(text)
    ids = list(enc.ids)
    logits = run_logits(model_dir, ids, enc.attention_mask, enc.type_ids)[0]
    mid = mask_token_id(tok)
    return ids, {p: logits[p].astype(np.float32) for p, t in enumerate(ids) if t == mid}


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()
