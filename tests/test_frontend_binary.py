"""Binary (1-bit) weights and 1-bit activations: QAT, conversion to exactly ±1, lowering, and the accelerator
at weight_bits=1 equal to the integer reference and to torch's Q/DQ graph."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from emu.compiler.codegen import compile_graph
from emu.compiler.schedule import CompileError
from emu.contract.config import AccelConfig
from emu.emulator.reference import run_reference
from emu.frontend.binary import BinaryFakeQuantize
from emu.frontend.lower import lower
from emu.runtime.run import get_backend, quantize_input, run_program
from emu.zoo import digits, train
from emu.zoo.nets import DigitsMLP


@pytest.fixture(scope="module")
def split():
    return digits.load_split("mlp")


@pytest.fixture(scope="module")
def binary_mlp(split):
    """The digits MLP fine-tuned for a few epochs at W1A1 with 8-bit logits, exported."""
    x_train, y_train, _, _ = split
    net = train.train_float(DigitsMLP, x_train, y_train, epochs=5, lr=3e-3)
    converted = train.qat(net, 1, 1, x_train, y_train, epochs=3, lr=1e-3, layer_bits={"fc3": (8, 1)})
    return torch.export.export(converted, (torch.from_numpy(x_train[:8]),),
                               dynamic_shapes={"x": {0: torch.export.Dim("batch")}})


def test_fake_quantize_is_sign_times_mean_magnitude():
    fq = BinaryFakeQuantize(ch_axis=0)
    w = torch.tensor([[0.5, -0.1, 0.0, 0.2], [-3.0, 1.0, -1.0, 1.0]], requires_grad=True)
    y = fq(w)
    scale = w.detach().abs().mean(dim=1, keepdim=True)
    assert torch.equal(y.detach(), torch.where(w >= 0, 1.0, -1.0) * scale)
    y.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))          # straight through
    assert torch.equal(fq.calculate_qparams()[0], scale.reshape(-1))


def test_binary_weights_convert_to_plus_minus_one_and_lower_as_one_bit(binary_mlp):
    graph = lower(binary_mlp)
    dense = [n for n in graph.nodes if hasattr(n, "weight")]
    assert [n.weight_bits for n in dense] == [1, 1, 1]
    for n in dense:
        assert set(np.unique(n.weight).tolist()) == {-1, 1}
    assert [graph.tensors[n.output].qparams.bits for n in dense] == [1, 1, 8]


@pytest.mark.parametrize("cfg", [AccelConfig(rows=4, cols=4, weight_bits=1, act_bits=8),
                                 AccelConfig(rows=3, cols=5, weight_bits=2, act_bits=8)], ids=str)
def test_binary_network_on_golden_equals_reference_and_torch(binary_mlp, split, cfg):
    from emu.frontend.torchref import torch_forward
    graph = lower(binary_mlp)
    x = split[2][:40]
    program = compile_graph(graph, cfg)
    xq = quantize_input(program, x)
    out = run_program(program, xq, backend=get_backend("golden"))
    ref = run_reference(graph, xq)
    for node in graph.nodes:
        assert np.array_equal(out.layers[node.output], ref[node.output]), node.name
    torch_pred = np.asarray(torch_forward(binary_mlp, x)).reshape(len(x), -1).argmax(1)
    assert np.array_equal(out.output.reshape(len(x), -1).argmax(1), torch_pred)


def test_pools_need_two_bit_weights():
    """A pool multiplies by unit weights (0 and 1), which binary weights cannot hold."""
    from emu.frontend.lower import load_pt2
    graph = lower(load_pt2(digits.checkpoint("w2a2", "cnn")))
    with pytest.raises(CompileError, match="2-bit weights, but the accelerator is built for weight_bits=1"):
        compile_graph(graph, AccelConfig(weight_bits=1))


def test_a_batch_norm_folded_into_binary_weights_is_refused(split):
    x_train, y_train, _, _ = digits.load_split("cnn")
    class ConvBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
            self.fc = nn.Linear(256, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))

    net = ConvBN().eval()
    with pytest.raises(ValueError, match="a batch norm folded into a convolution"):
        train.qat(net, 2, 1, x_train[:64], y_train[:64], epochs=1)
