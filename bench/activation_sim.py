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
real files where a real file exists (12-bit: 15 differ here, 14-16 in the files).

    PYTHONPATH=models .venv/bin/python bench/activation_sim.py 'qkv=12,ao=12,up=12,down=12' \\
        'qkv=a7g64,ao=a7g64,up=a7g64,down=12'      # ~5 min a scheme on 2 cores
"""
from __future__ import annotations

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "models"))
sys.path.insert(0, HERE)

from bertling_models import antiberty  # noqa: E402
from int8_accuracy import compare, model_mask_logits, torch_logits  # noqa: E402

WEIGHT_GROUP = 64


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
    def __init__(self, lin: torch.nn.Linear, quantize_input):
        super().__init__()
        self.bias = lin.bias
        self.weight = fake_symmetric(lin.weight.data, 127, WEIGHT_GROUP)
        self.quantize_input = quantize_input

    def forward(self, x):
        if self.quantize_input is not None:
            x = self.quantize_input(x)
        return torch.nn.functional.linear(x, self.weight, self.bias)


def build(spec: str):
    conf = dict(part.split("=") for part in spec.split(","))
    unknown = set(conf) - {"qkv", "ao", "up", "down", "other"}
    if unknown:
        raise ValueError(f"{spec}: unknown kinds {sorted(unknown)}")
    model = antiberty.build_model(antiberty.package_dir()).eval()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    for n in names:
        parent, attr = n.rsplit(".", 1)
        parent = model.get_submodule(parent)
        quantize_input = scheme(conf.get(kind(n), conf.get("other", "12")))
        setattr(parent, attr, FakeQuantLinear(getattr(parent, attr), quantize_input))
    return model


def main() -> int:
    specs = sys.argv[1:]
    if not specs or any(s in ("-h", "--help") for s in specs):
        print(__doc__)
        return 0 if specs else 2
    for spec in specs:
        build(spec)  # fail on a bad spec before the long reference run
    torch.set_num_threads(os.cpu_count() or 1)
    positions = antiberty.masked_positions()
    tok = antiberty.build_tokenizer(os.path.join(antiberty.package_dir(), antiberty.VOCAB))
    ids = [tok.encode(p.text).ids for p in positions]
    at = [p.position for p in positions]
    ref = torch_logits('', ids, at)
    for spec in specs:
        c = compare(model_mask_logits(build(spec), ids, at), ref)
        print(f"{spec:40} top-1 {c['top1_agreement'] * 100:.2f}% ({c['top1_disagreements']} differ) "
              f"top-5 {c['top5_overlap'] * 100:.2f}% cosine min {c['cosine_min']:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
