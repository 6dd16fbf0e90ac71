"""Which int8 activation schemes would keep AntiBERTy's accuracy: a fake-quantization simulation.

Not a measurement of bertling: a PyTorch model of the quantized arithmetic, used to decide which
schemes are worth a kernel. AntiBERTy (PyPI antiberty==0.1.3, a real pretrained BERT masked LM) is
loaded in PyTorch; every ``nn.Linear`` (the encoder's products and the masked-LM head's transform
and decoder) gets its weights quantized as ``bertling compile`` does (int8, a scale per output
channel and 64 inputs; the real files keep one scale per channel for a tied decoder) and its input quantized by the scheme under test, per kind of product:

- ``qkv``: the query, key and value projections (input: the previous LayerNorm's output);
- ``ao``: the attention output projection (input: the attention's context);
- ``up``: the FFN's first product (input: a LayerNorm's output);
- ``down``: the FFN's second product (input: the GELU's output);
- ``other``: the head.

A scheme is ``f`` (not quantized), ``B`` (symmetric B-bit codes, one scale per token), ``BgG``
(symmetric, a scale per token and group of G inputs) or ``aBgG`` (asymmetric: 2^B - 1 levels between
the group's min and max, with a zero point, like onnxruntime's uint8 but per group). The positions
and the comparison are ``bench/int8_accuracy.py``'s (2,652 masked residues; top-1 agreement and
top-5 overlap with fp32 PyTorch, cosine of the mask logits). Its rows are within ~0.1 point of the
real files where a real file exists (12-bit: 15 differ here, 14-16 in the files). Each row also
gives the mean KL divergence of the int8 mask distribution from fp32's, a smoother measure than the
count of flipped near-ties.

``--weights W`` quantizes the weights differently: ``BgG`` (symmetric B-bit codes, a scale per output
channel and G inputs; the default is ``8g64``, what ``bertling compile`` does), optionally per kind
(``up=4g32,down=4g32``, the rest ``8g64``): what a 4-bit weight mode would cost in accuracy.

``--smooth ALPHA`` first applies SmoothQuant-style per-input-channel smoothing to every product
(``x / s`` into the product, ``W · s`` quantized; ``s = max|x|^ALPHA / max|W|^(1 - ALPHA)``), with
``max|x|`` calibrated on 64 random residue sequences (not the evaluated ones): what a compiler could
do without representative text.

    PYTHONPATH=models .venv/bin/python bench/activation_sim.py 'qkv=12,ao=12,up=12,down=12' \\
        'qkv=a7g64,ao=a7g64,up=a7g64,down=12'      # ~5 min a scheme on 2 cores
    PYTHONPATH=models .venv/bin/python bench/activation_sim.py --smooth 0.5 'qkv=a7g64,ao=a7g64,up=a7g64,down=a7g64'
    PYTHONPATH=models .venv/bin/python bench/activation_sim.py --weights 4g32 'qkv=12,ao=12,up=12,down=12'
"""
from __future__ import annotations

import argparse
import os
import random
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
sys.path.insert(0, HERE)

from bertling_models import antiberty  # noqa: E402
from int8_accuracy import compare, model_mask_logits, softmax, torch_logits  # noqa: E402

WEIGHT_SCHEME = "8g64"


def fake_symmetric(x: torch.Tensor, qmax: int, group: int | None) -> torch.Tensor:
    """Round to codes in [-qmax, qmax] with a scale per row (or per group of ``group`` inputs)."""
    shape, k = x.shape, x.shape[-1]
    g = group or k
    xr = x.reshape(*shape[:-1], k // g, g)
    scale = xr.abs().amax(-1, keepdim=True) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return (torch.round(xr / scale).clamp(-qmax, qmax) * scale).reshape(shape)


def fake_asymmetric(x: torch.Tensor, levels: int, group: int) -> torch.Tensor:
    """Round to codes in [0, levels] between the group's min and max (zero kept exact)."""
    shape, k = x.shape, x.shape[-1]
    xr = x.reshape(*shape[:-1], k // group, group)
    lo = xr.amin(-1, keepdim=True).clamp(max=0)
    hi = xr.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.round(-lo / scale)
    q = (torch.round(xr / scale) + zero).clamp(0, levels)
    return ((q - zero) * scale).reshape(shape)


def scheme(spec: str):
    """The input quantizer a scheme string names (module doc), or None for ``f``."""
    if spec == "f":
        return None
    asym = spec.startswith("a")
    bits, _, group = spec.lstrip("a").partition("g")
    bits, group = int(bits), int(group) if group else None
    if asym:
        if group is None:
            raise ValueError(f"{spec}: asymmetric schemes need a group (a7g64)")
        return lambda x: fake_asymmetric(x, (1 << bits) - 1, group)
    return lambda x: fake_symmetric(x, (1 << (bits - 1)) - 1, group)


def kind(name: str) -> str:
    if any(p in name for p in ("query", "key", "value")):
        return "qkv"
    if "attention.output" in name:
        return "ao"
    if "intermediate" in name:
        return "up"
    if "output.dense" in name:
        return "down"
    return "other"


class FakeQuantLinear(torch.nn.Module):
    def __init__(self, lin: torch.nn.Linear, quantize_input, smooth: torch.Tensor | None = None,
                 weights: str = WEIGHT_SCHEME):
        super().__init__()
        self.bias = lin.bias
        w = lin.weight.data if smooth is None else lin.weight.data * smooth[None, :]
        bits, _, group = weights.partition("g")
        self.weight = fake_symmetric(w, (1 << (int(bits) - 1)) - 1, int(group))
        self.quantize_input = quantize_input
        self.smooth = smooth

    def forward(self, x):
        if self.smooth is not None:
            x = x / self.smooth
        if self.quantize_input is not None:
            x = self.quantize_input(x)
        return torch.nn.functional.linear(x, self.weight, self.bias)


def input_maxima(sequences: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of every nn.Linear's input over random residue sequences (one mask
    each), in the fp32 model: the calibration ``--smooth`` uses."""
    model = antiberty.build_model(antiberty.package_dir()).eval()
    tok = antiberty.build_tokenizer(os.path.join(antiberty.package_dir(), antiberty.VOCAB))
    rnd, residues = random.Random(seed), "ACDEFGHIKLMNPQRSTVWY"
    maxima: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, inputs, _output):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x
        return record

    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for _ in range(sequences):
            ids = tok.encode(antiberty.spaced([rnd.choice(residues) for _ in range(rnd.randint(30, 120))])).ids
            ids[rnd.randrange(1, len(ids) - 1)] = tok.token_to_id(antiberty.MASK)
            t = torch.tensor([ids])
            model(input_ids=t, attention_mask=torch.ones_like(t), token_type_ids=torch.zeros_like(t))
    for h in hooks:
        h.remove()
    return maxima


def kinds_spec(spec: str, default: str | None = None) -> dict[str, str]:
    """``kind=scheme,...`` as a dict; a bare ``scheme`` (with ``default`` given) means every kind."""
    if default is not None and "=" not in spec:
        return {k: spec for k in ("qkv", "ao", "up", "down", "other")}
    conf = dict(part.split("=") for part in spec.split(","))
    unknown = set(conf) - {"qkv", "ao", "up", "down", "other"}
    if unknown:
        raise ValueError(f"{spec}: unknown kinds {sorted(unknown)}")
    return conf


def build(spec: str, alpha: float | None = None, maxima: dict | None = None,
          weights: str = WEIGHT_SCHEME):
    conf = kinds_spec(spec)
    wconf = kinds_spec(weights, WEIGHT_SCHEME)
    model = antiberty.build_model(antiberty.package_dir()).eval()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for n in names:
        parent, attr = n.rsplit(".", 1)
        parent = model.get_submodule(parent)
        quantize_input = scheme(conf.get(kind(n), conf.get("other", "12")))
        lin = getattr(parent, attr)
        smooth = None
        if alpha is not None and maxima is not None:
            xm = maxima[n].clamp(min=1e-5)
            wm = lin.weight.data.abs().amax(0).clamp(min=1e-5)
            smooth = (xm ** alpha / wm ** (1 - alpha)).clamp(min=1e-5)
        wscheme = wconf.get(kind(n), WEIGHT_SCHEME)
        setattr(parent, attr, FakeQuantLinear(lin, quantize_input, smooth, wscheme))
    return model


def mean_kl(a, b) -> float:
    """Mean KL divergence of softmax(a) (int8) from softmax(b) (fp32) over positions."""
    pa, pb = softmax(a), softmax(b)
    return float((pb * (np.log(pb + 1e-12) - np.log(pa + 1e-12))).sum(1).mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+", metavar="SCHEME", help="activation schemes per kind of product")
    ap.add_argument("--smooth", type=float, default=None, metavar="ALPHA", help="SmoothQuant alpha")
    ap.add_argument("--weights", default=WEIGHT_SCHEME, help="weight codes: BgG, optionally per kind")
    args = ap.parse_args()
    specs, alpha, weights = args.specs, args.smooth, args.weights
    for spec in specs:
        build(spec, weights=weights)  # fail on a bad spec before the long reference run
    torch.set_num_threads(os.cpu_count() or 1)
    positions = antiberty.masked_positions()
    tok = antiberty.build_tokenizer(os.path.join(antiberty.package_dir(), antiberty.VOCAB))
    ids = [tok.encode(p.text).ids for p in positions]
    at = [p.position for p in positions]
    ref = torch_logits('', ids, at)
    maxima = input_maxima() if alpha is not None else None
    for spec in specs:
        got = model_mask_logits(build(spec, alpha, maxima, weights), ids, at)
        c = compare(got, ref)
        label = spec + (f" smooth {alpha}" if alpha is not None else "") + (
            f" weights {weights}" if weights != WEIGHT_SCHEME else "")
        print(f"{label:40} top-1 {c['top1_agreement'] * 100:.2f}% ({c['top1_disagreements']} differ) "
              f"top-5 {c['top5_overlap'] * 100:.2f}% cosine min {c['cosine_min']:.6f} "
              f"KL {mean_kl(got, ref):.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
