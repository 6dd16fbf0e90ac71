"""Exports in other forms than the fixtures': rewritten by onnxruntime's transformer optimizer, as
`optimum-cli export onnx --optimize O2` (and O3, with the GELU approximation) writes them; PyTorch's
form of the tanh GELU; eager attention, which scales the scores instead of the queries; PyTorch's
dynamo exporter (the default `torch.onnx.export` since PyTorch 2.9). The fused
operators tract reads (com.microsoft SkipLayerNormalization, BiasGelu, FastGelu, Gelu) compile, the
file answers as onnxruntime runs that same export, and its plan has each GELU and LayerNorm fused
again (no element-wise tanh, erf, cube or square root left) and the attention as the fixture's;
operators bertling cannot read are refused by name, with what to give instead. Each export is built
from a fixture and run by onnxruntime, so it is a valid model."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bertling_cli import (ARCHS, ROOT, assert_answers_as_onnxruntime, assert_compile_refused, copy_fixture,
                          reference_texts, run_bertling)

from bertling_models.ort import ort_mask_logits

# What a fused GELU or LayerNorm leaves behind when a fusion misses it.
UNFUSED = {"Tanh", "Erf", "Square", "PowConst", "Pow", "Sqrt", "Rsqrt", "Recip"}


def _heads_and_hidden(arch: str) -> tuple[int, int]:
    cfg = json.loads((ROOT / "models" / "fixtures" / arch / "config.json").read_text())
    if arch == "distilbert":
        return cfg["n_heads"], cfg["dim"]
    return cfg["num_attention_heads"], cfg["hidden_size"]


def _optimized(arch: str, tmp_path, **options):
    """The fixture through onnxruntime's transformer optimizer with these FusionOptions, attention
    and embedding fusions off (bertling cannot read those; optimum leaves the second off too)."""
    import onnxruntime as ort
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    export, _ = copy_fixture(arch, tmp_path)
    fusion = FusionOptions("bert")
    fusion.enable_attention = False
    fusion.enable_embed_layer_norm = False
    for key, value in options.items():
        setattr(fusion, key, value)
    heads, hidden = _heads_and_hidden(arch)
    # optimize_model's default for BERT (opt_level 1) is onnxruntime's basic graph pass, then the
    # Python fusions. Its pass imports torch (onnxruntime 1.32, for a GPU check even on CPU), which
    # CI has not: the same pass is run here through a session, and the fusions with opt_level 0.
    basic = tmp_path / "model_o1_cpu.onnx"
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session_options.optimized_model_filepath = str(basic)
    ort.InferenceSession(str(export / "model.onnx"), session_options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["ConstantSharing"])
    model = optimize_model(str(basic), model_type="bert", num_heads=heads, hidden_size=hidden,
                           optimization_options=fusion, opt_level=0)
    model.save_model_to_file(str(export / "model.onnx"))
    return export


def _contrib_ops(export) -> set[str]:
    graph = onnx.load(str(export / "model.onnx")).graph
    return {n.op_type for n in graph.node if n.domain == "com.microsoft"}


def _plan_ops(model) -> set[str]:
    out = run_bertling("bench", str(model), "--profile", "--seq", "16", "--threads", "1", "--runs", "1",
                       "--warmup", "0")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("op "))
    return {line.split()[0] for line in lines[start + 1:] if line.strip()}


def _assert_answers_as_onnxruntime(export, arch: str, tmp_path, reference=None):
    """Compiles `export` in fp32 and int8; the fp32 file answers as onnxruntime runs `reference`
    (default: the export itself), and neither plan keeps an unfused GELU or LayerNorm."""
    fp32, int8 = tmp_path / "fp32.bertling", tmp_path / "int8.bertling"
    run_bertling("compile", str(export), "-o", str(fp32), "--precision", "fp32")
    run_bertling("compile", str(export), "-o", str(int8))
    for text in reference_texts(arch)[:6]:
        assert_answers_as_onnxruntime(fp32, reference or export, text)
    for model in (fp32, int8):
        left = _plan_ops(model) & UNFUSED
        assert not left, f"{model.name}: unfused {sorted(left)}"


@pytest.mark.parametrize("arch", ARCHS)
def test_optimizer_fusions_compile_fused_and_answer_as_onnxruntime(arch, tmp_path):
    export = _optimized(arch, tmp_path)
    assert "SkipLayerNormalization" in _contrib_ops(export)
    _assert_answers_as_onnxruntime(export, arch, tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_optimizers_gelu_approximation_compiles_fused(arch, tmp_path):
    """O3: every GELU becomes onnxruntime's FastGelu (the tanh form, x·x·x inside)."""
    export = _optimized(arch, tmp_path, enable_gelu_approximation=True)
    assert "FastGelu" in _contrib_ops(export)
    _assert_answers_as_onnxruntime(export, arch, tmp_path)


def test_a_gelu_without_its_bias_compiles_fused(tmp_path):
    """com.microsoft Gelu, the exact GELU apart from the Add of its bias."""
    export = _optimized("bert", tmp_path, enable_bias_gelu=False)
    assert "Gelu" in _contrib_ops(export)
    _assert_answers_as_onnxruntime(export, "bert", tmp_path)


@pytest.mark.parametrize("form", ["x*(x*x)", "(x*x)*x"])
def test_a_tanh_gelu_with_its_cube_as_products_compiles_fused(form, tmp_path):
    """PyTorch exports gelu(approximate="tanh") with x·(x·x) where Hugging Face's gelu_new has
    Pow(x, 3): ALBERT's Pow nodes rewritten so."""
    export, model = copy_fixture("albert", tmp_path)
    graph, nodes, rewritten = model.graph, [], 0
    for node in graph.node:
        if node.op_type != "Pow":
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        square = helper.make_node("Mul", [x, x], [y + "_sq"])
        cube = helper.make_node("Mul", [x, y + "_sq"] if form == "x*(x*x)" else [y + "_sq", x], [y])
        nodes += [square, cube]
        rewritten += 1
    assert rewritten >= 2
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(export / "model.onnx"))
    _assert_answers_as_onnxruntime(export, "albert", tmp_path)


def test_operators_bertling_cannot_read_are_refused_by_name(tmp_path):
    """onnxruntime's FusedMatMul (a MatMul with transposes and a scale) in place of a MatMul: a
    valid model onnxruntime runs, refused before tract sees it, naming the operator."""
    export, model = copy_fixture("bert", tmp_path)
    (i, node) = next((i, n) for i, n in enumerate(model.graph.node) if n.op_type == "MatMul")
    fused = helper.make_node("FusedMatMul", list(node.input), list(node.output), name=node.name,
                             domain="com.microsoft", alpha=1.0, transA=0, transB=0)
    model.graph.node.remove(node)
    model.graph.node.insert(i, fused)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(export / "model.onnx"))
    ort_mask_logits(str(export), reference_texts("bert")[0])
    assert_compile_refused(export, tmp_path, "com.microsoft:FusedMatMul", "without --optimize")


def _constant(graph, name: str) -> float:
    node = next(n for n in graph.node if name in n.output)
    assert node.op_type == "Constant", node.op_type
    return float(numpy_helper.to_array(helper.get_attribute_value(node.attribute[0])))


def _eager(graph, op: str) -> int:
    """SDPA's `softmax((Q·√s)·(K·√s)ᵀ + mask)`, the fixtures' form, rewritten as eager attention's
    `softmax((Q·Kᵀ)·s + mask)` (op "Mul") or `softmax((Q·Kᵀ)/(1/s) + mask)` (op "Div", the form
    of transformers before 4.48); returns how many attentions were rewritten."""
    producer = {o: n for n in graph.node for o in n.output}
    rewritten = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        add = producer[softmax.input[0]]
        (matmul,) = [producer[i] for i in add.input if i in producer and producer[i].op_type == "MatMul"]
        muls = [producer[i] for i in matmul.input]
        assert [m.op_type for m in muls] == ["Mul", "Mul"], [m.op_type for m in muls]
        scale = 1.0
        for slot, mul in enumerate(muls):
            (x,) = [i for i in mul.input if producer.get(i) is None or producer[i].op_type != "Constant"]
            (c,) = [i for i in mul.input if i != x]
            scale *= _constant(graph, c)
            matmul.input[slot] = x
        scores, name = matmul.output[0], matmul.output[0] + "_scaled"
        value = np.array(scale if op == "Mul" else 1.0 / scale, dtype=np.float32)
        graph.initializer.append(numpy_helper.from_array(value, name + "_by"))
        node = helper.make_node(op, [scores, name + "_by"], [name])
        graph.node.insert(list(graph.node).index(matmul) + 1, node)
        add.input[list(add.input).index(scores)] = name
        rewritten += 1
    return rewritten


@pytest.mark.parametrize("op", ["Mul", "Div"])
@pytest.mark.parametrize("arch", ARCHS)
def test_eager_attention_compiles_to_the_fixtures_plan(arch, op, tmp_path):
    """Eager attention (Hugging Face's BERT-family models before SDPA exports, or
    attn_implementation="eager") scales the scores: the file answers as onnxruntime runs that
    export, and its plan has no operator kind the fixture's own plan lacks (the softmax, where the
    fixture's attention is fused)."""
    plain = tmp_path / "plain.bertling"
    run_bertling("compile", str(ROOT / "models" / "fixtures" / arch), "-o", str(plain), "--precision", "fp32")
    export, model = copy_fixture(arch, tmp_path)
    assert _eager(model.graph, op) >= 2
    onnx.save(model, str(export / "model.onnx"))
    _assert_answers_as_onnxruntime(export, arch, tmp_path)
    extra = _plan_ops(tmp_path / "fp32.bertling") - _plan_ops(plain)
    assert not extra, f"eager attention plans {sorted(extra)} too"


@pytest.mark.parametrize("arch", ARCHS)
def test_a_dynamo_export_compiles_to_the_fixtures_plan(arch, tmp_path):
    """The fixture's architecture exported by PyTorch's dynamo exporter (models/skeletons/dynamo,
    its weights drawn again by `regen`): opset 18+, the attention mask through GatherND (which
    must fold away like the TorchScript export's Gather), RoBERTa's position count in int64 (tract
    types it as a dimension, which its CumSum could not sum)."""
    from bertling_models import skeleton

    plain = tmp_path / "plain.bertling"
    run_bertling("compile", str(ROOT / "models" / "fixtures" / arch), "-o", str(plain), "--precision", "fp32")
    export = tmp_path / "export"
    skeleton.regen(skeleton.dynamo_skeleton_dir(arch), str(export))
    opsets = {o.domain: o.version for o in onnx.load(str(export / "model.onnx")).opset_import}
    assert opsets[""] >= 18, opsets
    _assert_answers_as_onnxruntime(export, arch, tmp_path)
    extra = _plan_ops(tmp_path / "fp32.bertling") - _plan_ops(plain)
    assert not extra, f"the dynamo export plans {sorted(extra)} too"


def _fix_length(graph, length: int):
    for i in graph.input:
        i.type.tensor_type.shape.dim[1].ClearField("dim_param")
        i.type.tensor_type.shape.dim[1].dim_value = length


def test_a_fixed_length_export_is_refused_with_what_to_give_instead(tmp_path):
    """An export made without a dynamic sequence axis has its length baked into its reshapes:
    the compile fails, and says the export has a fixed length and what to give instead. One whose
    graph computes its shapes (only the declared input length fixed) still compiles and answers."""
    heads, hidden = _heads_and_hidden("bert")
    export, model = copy_fixture("bert", tmp_path)
    _fix_length(model.graph, 16)
    onnx.save(model, str(export / "model.onnx"))
    # onnxruntime holds the export to its declared length: the fixture is the reference.
    _assert_answers_as_onnxruntime(export, "bert", tmp_path, reference=ROOT / "models" / "fixtures" / "bert")

    reshape = next(n for n in model.graph.node if n.op_type == "Reshape" and "attention" in n.name)
    baked = numpy_helper.from_array(np.array([1, 16, heads, hidden // heads], dtype=np.int64), "baked_shape")
    model.graph.initializer.append(baked)
    reshape.input[1] = "baked_shape"
    onnx.checker.check_model(model)
    onnx.save(model, str(export / "model.onnx"))
    assert_compile_refused(export, tmp_path, "fixed length (16 tokens)", "dynamic sequence axis")
