"""Exports that are not plain fp32. Weights merely stored in int8 (behind a DequantizeLinear) or
fp16 (behind a Cast) compile, and the file answers as onnxruntime runs that export; graphs that
compute in int8 (onnxruntime's quantize_dynamic) or in fp16 are refused with what to give
instead. Each export is built from a fixture and run by onnxruntime, so it is a valid model."""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bertling_cli import ROOT, assert_compile_refused, copy_fixture, fill_json, reference_texts, run_bertling

from bertling_models.ort import ort_mask_logits

ARCHS = ["albert", "roberta"]


def _texts(arch: str) -> list[str]:
    return reference_texts(arch)[:6]


def _store_largest_weight(model, kind: str):
    """The largest weight (a matrix every export has) stored in int8 or fp16, turned back into
    fp32 by a node, as weight-only quantized and mixed-precision exports do."""
    graph = model.graph
    weight = max(graph.initializer, key=lambda t: int(np.prod(t.dims)))
    graph.initializer.remove(weight)
    w, name = numpy_helper.to_array(weight), weight.name
    if kind == "int8":
        scale = np.float32(np.abs(w).max() / 127)
        graph.initializer.extend([numpy_helper.from_array(np.round(w / scale).astype(np.int8), name + "_q"),
                                  numpy_helper.from_array(np.array(scale), name + "_s")])
        node = helper.make_node("DequantizeLinear", [name + "_q", name + "_s"], [name])
    else:
        graph.initializer.append(numpy_helper.from_array(w.astype(np.float16), name + "_h"))
        node = helper.make_node("Cast", [name + "_h"], [name], to=TensorProto.FLOAT)
    graph.node.insert(0, node)


def _assert_refused(export, arch: str, tmp_path, needle: str):
    """onnxruntime runs the export (a valid model); bertling's compile refuses it, saying what it
    is and to give the fp32 export, without a panic or an output file."""
    ort_mask_logits(str(export), _texts(arch)[0])
    assert_compile_refused(export, tmp_path, needle, "fp32 export")


@pytest.mark.parametrize("kind", ["int8", "fp16"])
@pytest.mark.parametrize("arch", ARCHS)
def test_weights_stored_in_int8_or_fp16_compile_and_answer_as_onnxruntime(arch, kind, tmp_path):
    export, model = copy_fixture(arch, tmp_path)
    _store_largest_weight(model, kind)
    onnx.save(model, str(export / "model.onnx"))
    out = tmp_path / "x.bertling"
    run_bertling("compile", str(export), "-o", str(out), "--precision", "fp32")
    for text in _texts(arch):
        ids, ort_logits = ort_mask_logits(str(export), text)
        ours = fill_json(out, text)
        assert ours["input_ids"] == ids, text
        for mask, pos in zip(ours["masks"], sorted(ort_logits)):
            want = ort_logits[pos]
            diff = float(np.max(np.abs(np.asarray(mask["logits"], dtype=np.float32) - want)))
            assert diff <= 1e-4 * max(1.0, float(np.max(np.abs(want)))), f"{text!r}: {diff}"


@pytest.mark.parametrize("arch", ARCHS)
def test_a_dynamically_quantized_export_is_refused_with_what_to_give_instead(arch, tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    export, _ = copy_fixture(arch, tmp_path)
    quantize_dynamic(str(ROOT / "models" / "fixtures" / arch / "model.onnx"), str(export / "model.onnx"),
                     weight_type=QuantType.QInt8)
    _assert_refused(export, arch, tmp_path, "already quantized")


@pytest.mark.parametrize("arch", ARCHS)
def test_an_fp16_export_is_refused_with_what_to_give_instead(arch, tmp_path):
    export, model = copy_fixture(arch, tmp_path)
    _store_largest_weight(model, "fp16")
    graph = model.graph
    (logits,) = [o for o in graph.output if o.name == "logits"]
    for node in graph.node:  # the graph computes "logits32"; a Cast gives fp16 logits
        node.output[:] = ["logits32" if o == "logits" else o for o in node.output]
    graph.node.append(helper.make_node("Cast", ["logits32"], ["logits"], to=TensorProto.FLOAT16))
    logits.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.save(model, str(export / "model.onnx"))
    _assert_refused(export, arch, tmp_path, "half precision")
