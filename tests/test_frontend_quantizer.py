"""SystolaQuantizer: argument checks, and PT2E prepare (PTQ and QAT) / convert at W8A8, W4A4, W2A2.

Also holds the small helpers (`TinyMLP`, `quantize`, `export`) the other frontend tests import.
"""
import pytest
import torch
import torch.nn.functional as F

from emu.frontend import SystolaQuantizer
from emu.frontend.quantizer import act_range, weight_range
from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

qd = torch.ops.quantized_decomposed
BATCH = {"x": {0: torch.export.Dim("batch")}}


class TinyMLP(torch.nn.Module):
    """16 -> 12 -> ReLU -> 8 -> ReLU6 -> 4."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 12)
        self.fc2 = torch.nn.Linear(12, 8)
        self.fc3 = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc3(F.relu6(self.fc2(F.relu(self.fc1(x)))))


def calibration_data(n=64, features=16):
    return torch.randn(n, features, generator=torch.Generator().manual_seed(1))


def quantize(model, quantizer, x, qat=False, dynamic=True):
    """export -> prepare (PTQ calibration or a few QAT steps) -> convert_pt2e."""
    torch.manual_seed(0)
    gm = torch.export.export(model.eval(), (x[:4],), dynamic_shapes=BATCH if dynamic else None).module()
    batches = [x] if dynamic else list(x.split(4))  # a static export only takes batches of 4
    if qat:
        prepared = prepare_qat_pt2e(gm, quantizer)
        move_exported_model_to_train(prepared)
        opt = torch.optim.SGD(prepared.parameters(), lr=1e-2)
        for batch in batches[:3]:
            opt.zero_grad()
            prepared(batch).square().mean().backward()
            opt.step()
        move_exported_model_to_eval(prepared)
    else:
        prepared = prepare_pt2e(gm, quantizer)
        for batch in batches:
            prepared(batch)
    return convert_pt2e(prepared)


def export(converted, x, dynamic=True):
    return torch.export.export(converted, (x[:4],), dynamic_shapes=BATCH if dynamic else None)


def _nodes(gm, target):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target == target]


@pytest.mark.parametrize("kwargs, message", [
    ({"act_bits": 9}, "act_bits=9 is not accepted: expected an integer from 1 to 8"),
    ({"weight_bits": 0}, "weight_bits=0 is not accepted: expected an integer from 1 to 8"),
    ({"act_bits": "8"}, "act_bits='8' is not accepted: expected an integer from 1 to 8"),
    ({"weight_bits": True}, "weight_bits=True is not accepted: expected an integer from 1 to 8"),
    ({"is_qat": 1}, "is_qat=1 is not accepted: expected True or False"),
])
def test_arguments_checked(kwargs, message):
    with pytest.raises(ValueError) as info:
        SystolaQuantizer(**kwargs)
    assert str(info.value) == message


def test_keyword_only():
    with pytest.raises(TypeError):
        SystolaQuantizer(8, 8)


def test_ranges():
    assert weight_range(8) == (-127, 127) and weight_range(4) == (-7, 7) and weight_range(2) == (-1, 1)
    assert act_range(8) == (-128, 127) and act_range(4) == (-8, 7) and act_range(2) == (-2, 1)


@pytest.mark.parametrize("qat", [False, True], ids=["ptq", "qat"])
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_prepare_convert(bits, qat):
    x = calibration_data()
    quantizer = SystolaQuantizer(act_bits=bits, weight_bits=bits, is_qat=qat)
    converted = quantize(TinyMLP(), quantizer, x, qat=qat)
    a_lo, a_hi = act_range(bits)
    w_lo, w_hi = weight_range(bits)
    quants = _nodes(converted, qd.quantize_per_tensor.default)
    assert len(quants) == 4  # the input and three layer outputs
    assert all(n.args[3:6] == (a_lo, a_hi, torch.int8) for n in quants)
    weights = _nodes(converted, qd.dequantize_per_channel.default)
    assert len(weights) == 3
    for n in weights:
        assert n.args[3:7] == (0, w_lo, w_hi, torch.int8)
        w = getattr(converted, n.args[0].target)
        assert w.dtype == torch.int8 and w_lo <= int(w.min()) and int(w.max()) <= w_hi
        assert int(getattr(converted, n.args[2].target).abs().max()) == 0  # symmetric
    # the activations sit inside the layer: linear -> relu -> quantize, nothing quantized in between
    for act in (torch.ops.aten.relu.default, torch.ops.aten.relu6.default):
        (node,) = _nodes(converted, act)
        assert node.args[0].target == torch.ops.aten.linear.default
        assert [u.target for u in node.users] == [qd.quantize_per_tensor.default]
    y = converted(x)
    assert y.shape == (64, 4) and torch.isfinite(y).all()


def test_w8a8_close_to_float():
    x = calibration_data()
    model = TinyMLP()
    converted = quantize(model, SystolaQuantizer(act_bits=8, weight_bits=8), x)
    with torch.no_grad():
        ref = model(x)
    assert (converted(x) - ref).abs().max() < 0.05 * ref.abs().max()


# ---- calibration choices, learned scales, per-layer widths ----
@pytest.mark.parametrize("kwargs, message", [
    ({"calibration": "max"}, "calibration='max' is not accepted: expected one of 'minmax', 'percentile', 'mse'"),
    ({"weight_calibration": "percentile"},
     "weight_calibration='percentile' is not accepted: expected one of 'minmax', 'mse'"),
    ({"learn_scales": True}, "learn_scales=True is not accepted with is_qat=False: scales are learned by QAT"),
    ({"weight_bits": 1}, "1-bit (binary) weights are accepted only with is_qat=True: post-training "
     "quantization would round small weights to 0"),
    ({"layer_bits": {"fc1": (8, 1)}}, "1-bit (binary) weights are accepted only with is_qat=True: post-training "
     "quantization would round small weights to 0"),
    ({"is_qat": True, "learn_scales": "yes"}, "learn_scales='yes' is not accepted: expected True or False"),
    ({"layer_bits": [("fc1", (8, 8))]}, "layer_bits=[('fc1', (8, 8))] is not accepted: expected a dict from a "
     "module or node name pattern to (act_bits, weight_bits)"),
    ({"layer_bits": {"fc1": (8, 9)}}, "layer_bits['fc1']=(8, 9) is not accepted: expected a pair (act_bits, "
     "weight_bits) of integers from 1 to 8"),
    ({"layer_bits": {"fc1": 8}}, "layer_bits['fc1']=8 is not accepted: expected a pair (act_bits, "
     "weight_bits) of integers from 1 to 8"),
])
def test_options_checked(kwargs, message):
    with pytest.raises(ValueError) as info:
        SystolaQuantizer(**kwargs)
    assert str(info.value) == message


def test_mixed_widths_mlp():
    """Each layer's output takes its own act_bits; no tensor is quantized twice."""
    x = calibration_data()
    quantizer = SystolaQuantizer(act_bits=4, weight_bits=4, layer_bits={"fc2": (2, 8), "fc3": (8, 2)})
    converted = quantize(TinyMLP(), quantizer, x)
    quants = [n.args[3:5] for n in _nodes(converted, qd.quantize_per_tensor.default)]
    assert quants == [act_range(4), act_range(4), act_range(2), act_range(8)]  # input, fc1, fc2, fc3
    weights = [n.args[4:6] for n in _nodes(converted, qd.dequantize_per_channel.default)]
    assert sorted(weights) == sorted([weight_range(4), weight_range(8), weight_range(2)])


@pytest.mark.parametrize("qat", [False, True], ids=["ptq", "qat"])
def test_learned_scales_convert(qat):
    x = calibration_data()
    quantizer = SystolaQuantizer(act_bits=2, weight_bits=2, is_qat=qat, learn_scales=qat, calibration="mse",
                                 weight_calibration="mse")
    converted = quantize(TinyMLP(), quantizer, x, qat=qat)
    assert all(n.args[3:5] == act_range(2) for n in _nodes(converted, qd.quantize_per_tensor.default))
    assert torch.isfinite(converted(x)).all()


# ---- convolutional networks: conv, batch norm, residual add, pooling ----
def _cnn():
    from emu.zoo.nets import DigitsCNN
    torch.manual_seed(0)
    model = DigitsCNN(channels=(4, 8))
    with torch.no_grad():  # non-trivial batch-norm statistics, so folding them matters
        for bn in (model.stem_bn, model.bn1, model.bn2, model.down_bn):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _image_data(n=32):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def _qparams(node):
    return tuple(node.args[1:6])  # scale, zero point, quant_min, quant_max, dtype


CNN_BITS = {"stem": (4, 8), "conv1": (2, 2), "conv2": (4, 3), "add": (8, 8), "down": (3, 5), "gap": (6, 8),
            "fc": (8, 2)}


@pytest.mark.parametrize("qat", [False, True], ids=["ptq", "qat"])
def test_cnn_mixed_widths(qat):
    x = _image_data()
    model = _cnn()
    quantizer = SystolaQuantizer(act_bits=8, weight_bits=8, is_qat=qat, layer_bits=CNN_BITS)
    converted = quantize(model, quantizer, x, qat=qat)
    graph = export(converted, x).graph
    targets = {n.target for n in graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in str(t) for t in targets)      # folded into the convolutions
    out = {n.args[0].target: n for n in graph.nodes if n.target == qd.quantize_per_tensor.default}
    nodes = {n.name: n for n in graph.nodes}
    # each quantize after a layer has the layer's act_bits
    quantized = [n for n in graph.nodes if n.target == qd.quantize_per_tensor.default]
    ranges = [(n.args[0].name, n.args[3:5]) for n in quantized]
    assert ranges == [("x", act_range(4)), ("relu", act_range(4)), ("relu_1", act_range(2)),
                      ("conv2d_2", act_range(4)), ("relu_2", act_range(8)), ("relu6", act_range(3)),
                      ("max_pool2d", act_range(3)), ("adaptive_avg_pool2d", act_range(6)),
                      ("flatten", act_range(6)), ("linear", act_range(8))]
    del out
    # weights: per channel, symmetric, the layer's weight_bits, in conv order then the linear
    weights = {n.users.__iter__().__next__().name: n.args[4:6]
               for n in graph.nodes if n.target == qd.dequantize_per_channel.default}
    assert weights == {"conv2d": weight_range(8), "conv2d_1": weight_range(2), "conv2d_2": weight_range(3),
                       "conv2d_3": weight_range(5), "linear": weight_range(2)}
    # the two add inputs share one set of parameters; max pool passes its input's through
    add = nodes["add"]
    a, b = add.args
    assert a.target == b.target == qd.dequantize_per_tensor.default and _qparams(a) == _qparams(b)
    pool = nodes["max_pool2d"]
    assert _qparams(pool.args[0]) == _qparams(next(iter(pool.users)))
    gap = nodes["adaptive_avg_pool2d"]
    assert _qparams(gap.args[0]) != _qparams(next(iter(gap.users)))
    assert nodes["conv2d_3"].args[3:5] == ([2, 2], [1, 1])          # stride 2, padding 1
    with torch.no_grad():
        ref = model(x)
    assert torch.isfinite(converted(x)).all() and converted(x).shape == ref.shape


def test_cnn_w8a8_close_to_float():
    x = _image_data()
    model = _cnn()
    converted = quantize(model, SystolaQuantizer(calibration="mse", weight_calibration="mse"), x)
    with torch.no_grad():
        ref = model(x)
    assert (converted(x) - ref).abs().max() < 0.05 * ref.abs().max()


def test_add_inputs_of_different_widths_refused():
    x = _image_data()
    quantizer = SystolaQuantizer(layer_bits={"stem": (4, 8), "conv2": (8, 8)})
    with pytest.raises(ValueError) as info:
        quantize(_cnn(), quantizer, x)
    assert str(info.value) == (
        "add 'add' is not accepted: its inputs 'relu' and 'conv2d_2' are quantized to [-8, 7] and "
        "[-128, 127]; an add needs both at one width: give their producers the same act_bits")
