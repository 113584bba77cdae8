"""torchref: torch's own Q/DQ arithmetic per lowered layer and end to end, against plain integer math."""
import numpy as np
import pytest
import torch

from emu.frontend import SystolaQuantizer, load_pt2, lower
from emu.frontend.torchref import torch_forward, torch_layer, torch_layer_outputs
from test_frontend_quantizer import TinyMLP, calibration_data, export, quantize

from emu.zoo import digits


def _integer_layer(graph, node, x_int):
    """Straightforward float64 requantization: round half to even, then the layer's clamp."""
    qx, qy = graph.tensors[node.input].qparams, graph.tensors[node.output].qparams
    acc = (x_int - qx.zero_point) @ node.weight.T + node.bias
    y = np.round(acc * (qx.scale * node.weight_scale / qy.scale)) + qy.zero_point
    return np.clip(y, *node.clamp).astype(np.int64)


def _torch_chain(ep, graph, x_int):
    """(node, its integer input, torch's integer output) layer by layer, each layer fed torch's previous one."""
    for node in graph.nodes:
        y_torch = torch_layer(node.name, ep, graph, x_int)
        yield node, x_int, y_torch
        x_int = y_torch


def _checkpoint(bits):
    ep = load_pt2(digits.checkpoint(f"w{bits}a{bits}"))
    return ep, lower(ep)


@pytest.mark.parametrize("bits", [8, 4])
def test_layers_agree_with_integer_math(bits):
    ep, graph = _checkpoint(bits)
    _, _, x_test, _ = digits.load_split()
    x_int = graph.tensors[graph.input].qparams.quantize(x_test)
    for node, x_in, y_torch in _torch_chain(ep, graph, x_int):
        y_int = _integer_layer(graph, node, x_in)
        assert y_torch.dtype == np.int64 and y_torch.shape == (len(x_test), node.weight.shape[0])
        assert np.abs(y_torch - y_int).max() <= 1
        assert (y_torch == y_int).mean() > 0.95


@pytest.mark.parametrize("bits", [8, 4])
def test_layers_compose_to_forward(bits):
    ep, graph = _checkpoint(bits)
    _, _, x_test, y_test = digits.load_split()
    x_int = graph.tensors[graph.input].qparams.quantize(x_test)
    inputs = {graph.input: x_int}
    for node in graph.nodes:
        inputs[node.output] = torch_layer(node.name, ep, graph, inputs[node.input])
    per_layer = torch_layer_outputs(ep, graph, inputs)
    for node in graph.nodes:
        np.testing.assert_array_equal(per_layer[node.name], inputs[node.output])
    y_float = torch_forward(ep, x_test)
    assert y_float.dtype == np.float32 and y_float.shape == (len(x_test), 10)
    np.testing.assert_array_equal(graph.tensors[graph.output].qparams.quantize(y_float), inputs[graph.output])
    assert (y_float.argmax(1) == y_test).mean() > 0.95


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_tiny_mlp_relu6(bits):
    torch.manual_seed(0)
    x = calibration_data()
    ep = export(quantize(TinyMLP(), SystolaQuantizer(act_bits=bits, weight_bits=bits), x), x)
    graph = lower(ep)
    x_int = graph.tensors[graph.input].qparams.quantize(x.numpy())
    for node, x_in, y_torch in _torch_chain(ep, graph, x_int):
        assert np.abs(y_torch - _integer_layer(graph, node, x_in)).max() <= 1


@pytest.mark.parametrize("bits", [8, 4])
def test_post_datapath_within_one_lsb(bits):
    """The accelerator's integer requantization (emu.contract.numerics) stays within 1 LSB of torch, layer by layer."""
    from emu.contract import numerics
    ep, graph = _checkpoint(bits)
    _, _, x_test, _ = digits.load_split()
    x_int = graph.tensors[graph.input].qparams.quantize(x_test)
    for node, x_in, y_torch in _torch_chain(ep, graph, x_int):
        qx, qy = graph.tensors[node.input].qparams, graph.tensors[node.output].qparams
        multiplier, bias, shift = node.post_params(graph)
        acc = (x_in - qx.zero_point) @ node.weight.T
        y_post = numerics.requantize(acc, bias, multiplier, shift, qy.zero_point, *node.clamp)
        assert np.abs(y_post - y_torch).max() <= 1 and (y_post == y_torch).mean() > 0.95
