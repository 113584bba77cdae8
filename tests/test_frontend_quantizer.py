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
    ({"act_bits": 9}, "act_bits=9 is not accepted: expected an integer from 2 to 8"),
    ({"weight_bits": 1}, "weight_bits=1 is not accepted: expected an integer from 2 to 8"),
    ({"act_bits": "8"}, "act_bits='8' is not accepted: expected an integer from 2 to 8"),
    ({"weight_bits": True}, "weight_bits=True is not accepted: expected an integer from 2 to 8"),
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
