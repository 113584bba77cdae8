"""lower(): shipped checkpoints, XNNPACK-style int8 models, static/dynamic batch, no-ops, clamps, errors."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emu.compiler import ir
from emu.frontend import SystolaQuantizer, UnsupportedModelError, load_pt2, lower
from test_frontend_quantizer import TinyMLP, calibration_data, export, quantize

from emu.zoo.digits import MODELS_DIR as MODELS, checkpoint as digits_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lower_model(model, quantizer=None, dynamic=True, features=16, host=True):
    x = calibration_data(features=features)
    quantizer = quantizer or SystolaQuantizer(act_bits=8, weight_bits=8)
    return lower(export(quantize(model, quantizer, x, dynamic=dynamic), x, dynamic=dynamic), host=host)


@pytest.mark.parametrize("bits", [8, 4])
def test_shipped_checkpoint(bits):
    path = os.path.join(MODELS, f"digits_mlp_w{bits}a{bits}.pt2")
    assert os.path.getsize(path) < 100_000
    graph = lower(load_pt2(path))
    assert [(graph.tensors[n.input].shape, graph.tensors[n.output].shape) for n in graph.nodes] == \
        [((64,), (64,)), ((64,), (32,)), ((32,), (10,))]
    assert graph.nodes[0].input == graph.input and graph.nodes[-1].output == graph.output
    for a, b in zip(graph.nodes, graph.nodes[1:]):
        assert b.input == a.output
    qmax = (1 << (bits - 1)) - 1
    for node in graph.nodes:
        assert node.weight_bits == bits and graph.tensors[node.output].qparams.bits == bits
        assert node.weight.dtype == np.int64 and node.bias.dtype == np.float64
        assert -qmax <= node.weight.min() and node.weight.max() <= qmax
        assert node.weight_scale.shape == (node.weight.shape[0],) and np.all(node.weight_scale > 0)
        assert np.abs(node.bias).max() < 2 ** 31
    out = graph.tensors[graph.nodes[0].output].qparams   # after ReLU: zero point at or above qmin
    assert graph.nodes[0].clamp == (max(out.qmin, out.zero_point), out.qmax)
    last = graph.tensors[graph.output].qparams            # no activation
    assert graph.nodes[-1].clamp == (last.qmin, last.qmax)


def test_import_is_quiet():
    code = "import emu.frontend; emu.frontend.load_pt2(%r)" % os.path.join(MODELS, "digits_mlp_w8a8.pt2")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "Failed to load" not in done.stderr


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_static_and_dynamic_batch(dynamic):
    torch.manual_seed(0)
    graph = _lower_model(TinyMLP(), dynamic=dynamic)
    assert [n.weight.shape for n in graph.nodes] == [(12, 16), (8, 12), (4, 8)]
    assert graph.tensors[graph.input].shape == (16,)


def test_static_equals_dynamic():
    torch.manual_seed(0)
    model = TinyMLP()
    a, b = _lower_model(model, dynamic=False), _lower_model(model, dynamic=True)
    assert a.tensors == b.tensors
    for x, y in zip(a.nodes, b.nodes):
        np.testing.assert_array_equal(x.weight, y.weight)
        np.testing.assert_array_equal(x.bias, y.bias)
        assert x.clamp == y.clamp


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_xnnpack_symmetric_int8(per_channel):
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 12), torch.nn.Linear(12, 4)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XNNPACKQuantizer warns that it is deprecated
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    graph = _lower_model(Mlp(), quantizer)
    assert [n.weight_bits for n in graph.nodes] == [8, 8]
    assert all(np.abs(n.weight).max() <= 127 for n in graph.nodes)
    if not per_channel:  # one scale per tensor, broadcast over the output channels
        assert all(np.all(n.weight_scale == n.weight_scale[0]) for n in graph.nodes)
    assert all(t.qparams.bits == 8 for t in graph.tensors.values())
    out = graph.tensors[graph.nodes[0].output].qparams
    assert graph.nodes[0].clamp == (max(-128, out.zero_point), 127)


def test_clamp_bounds():
    class Clamped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 12), torch.nn.Linear(12, 4, bias=False)

        def forward(self, x):
            return self.fc2(F.hardtanh(self.fc1(x), -0.5, 0.25))

    torch.manual_seed(0)
    graph = _lower_model(Clamped())
    q = graph.tensors[graph.nodes[0].output].qparams
    bounds = torch.ops.quantized_decomposed.quantize_per_tensor(
        torch.tensor([-0.5, 0.25]), q.scale, q.zero_point, q.qmin, q.qmax, torch.int8)
    assert graph.nodes[0].clamp == tuple(bounds.tolist())
    assert not graph.nodes[1].bias.any()


def test_noops_skipped():
    class Noisy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 12), torch.nn.Linear(12, 4)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x):
            h = F.relu(self.fc1(torch.flatten(x, 1).contiguous()))
            return self.fc2(self.drop(h.reshape(-1, 12)))

    torch.manual_seed(0)
    graph = _lower_model(Noisy())
    assert [n.weight.shape for n in graph.nodes] == [(12, 16), (4, 12)]


def _assert_one_line_error(info, node_name, op):
    message = str(info.value)
    assert "\n" not in message
    assert f"node {node_name!r}" in message and op in message and "supported:" in message


def test_sigmoid_is_an_activation_table_with_or_without_host():
    """A sigmoid between two linears: the first Dense looks its results up in torch's sigmoid table, so no
    host op is left and --no-host accepts it; a layer norm after it is still refused without host ops."""
    class Sig(torch.nn.Module):
        def __init__(self, norm=False):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(16, 12), torch.nn.Linear(12, 4)
            self.norm = torch.nn.LayerNorm(12) if norm else torch.nn.Identity()

        def forward(self, x):
            return self.fc2(self.norm(torch.sigmoid(self.fc1(x))))

    for host in (True, False):
        torch.manual_seed(0)
        graph = _lower_model(Sig(), host=host)
        assert [n.describe() for n in graph.nodes] == ["Dense +sigmoid", "Dense"]
    torch.manual_seed(0)
    with pytest.raises(UnsupportedModelError) as info:
        _lower_model(Sig(norm=True), host=False)
    _assert_one_line_error(info, "layer_norm", "aten.layer_norm")
    assert isinstance(info.value, ValueError)


class CeilPool(torch.nn.Module):
    def __init__(self, pool, features=3 * 4 * 4):
        super().__init__()
        self.conv, self.pool = torch.nn.Conv2d(1, 3, 3), pool
        self.fc = torch.nn.Linear(features, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


@pytest.mark.parametrize("kernel, stride, size", [(2, 2, 7), (3, 2, 8), (3, 1, 6)])   # SqueezeNet's is 3, 2
def test_ceil_mode_max_pool(kernel, stride, size):
    """ceil_mode: the last window hangs over the map's edge (not for stride 1); golden == reference,
    torch within 1 LSB."""
    import io
    from emu.contract.config import AccelConfig
    from emu.runtime.run import get_backend
    from emu.runtime.verify import verify
    torch.manual_seed(0)
    x = torch.randn(8, 1, size + 2, size + 2)
    out = -(-(size - kernel) // stride) + 1
    model = CeilPool(torch.nn.MaxPool2d(kernel, stride, ceil_mode=True), 3 * out * out)
    ep = export(quantize(model, SystolaQuantizer(), x), x)
    graph = lower(ep)
    assert "Host" not in [type(n).__name__ for n in graph.nodes]
    log = io.StringIO()
    assert verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), {"golden": get_backend("golden")}, out=log), \
        log.getvalue()


def test_ceil_mode_avg_pool_is_a_host_op():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 10, 10)
    converted = quantize(CeilPool(torch.nn.AvgPool2d(3, 2, ceil_mode=True)), SystolaQuantizer(), x)
    with pytest.raises(UnsupportedModelError) as info:
        lower(export(converted, x), host=False)
    _assert_one_line_error(info, "avg_pool2d", "aten.avg_pool2d")
    assert "ceil_mode" in str(info.value)
    assert [type(n).__name__ for n in lower(export(converted, x)).nodes] == ["Conv2d", "Host", "Dense"]


@pytest.mark.parametrize("tag", ["w8a8", "w2a2"])
def test_shipped_cnn_lowers_to_every_operator(tag):
    graph = lower(load_pt2(digits_checkpoint(tag, "cnn")))
    kinds = [n.describe() for n in graph.nodes]
    assert graph.input_layout == "nchw" and graph.tensors[graph.input].shape == (8, 8, 1)
    assert "Conv2d 3x3/2" in kinds and "Add" in kinds and "MaxPool 2x2/2" in kinds and kinds[-1] == "Dense"
    assert any(k.startswith("AvgPool") for k in kinds)
    add = next(n for n in graph.nodes if isinstance(n, ir.Add))
    assert add.weights == (1, 1)   # the quantizer shares the add inputs' qparams: an exact add


def test_qparams_are_ir_qparams():
    torch.manual_seed(0)
    graph = _lower_model(TinyMLP(), SystolaQuantizer(act_bits=4, weight_bits=2))
    assert all(isinstance(t.qparams, ir.QParams) and t.qparams.bits == 4 for t in graph.tensors.values())
    assert all(n.weight_bits == 2 and set(np.unique(n.weight)) <= {-1, 0, 1} for n in graph.nodes)


class ViewsItsInput(torch.nn.Module):
    """A user's MNIST model: the flat input viewed as a map, a conv, a linear on the flattened map."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4 * 5 * 5, 10)

    def forward(self, x):
        x = x.view(-1, 1, 7, 7)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
def test_input_viewed_as_a_map(quantizer):
    """The program takes the map; the user still gives [B, 49]; golden == reference, torch exact."""
    import io
    from emu.contract.config import AccelConfig
    from emu.runtime.run import get_backend
    from emu.runtime.verify import verify
    from emu.zoo.vision import _quantizer
    torch.manual_seed(0)
    x = torch.randn(8, 49)
    ep = export(quantize(ViewsItsInput().eval(), _quantizer(quantizer, 8, 8), x), x)
    graph = lower(ep)
    assert graph.input_layout == "nchw_flat" and graph.tensors[graph.input].shape == (7, 7, 1)
    log = io.StringIO()
    assert verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), {"golden": get_backend("golden")}, out=log), \
        log.getvalue()


class ReadsAudioChannels(torch.nn.Module):
    """A 1-D conv net over [B, 3, 24]: the input's channels must reach the program channels-last."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv1d(3, 4, 5, stride=2, padding=2), torch.nn.Linear(4 * 6, 5)

    def forward(self, x):
        return self.fc(F.max_pool1d(torch.relu(self.conv(x)), 2).flatten(1))


@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
def test_conv1d_input_with_channels(quantizer):
    """The program takes [1, L, C] from the user's [B, C, L]: its logits equal torch's Q/DQ graph's end to end
    (within 1 LSB), which a wrong input layout would not (the per-layer checks feed both sides the same input)."""
    from emu.compiler.codegen import compile_graph
    from emu.contract.config import AccelConfig
    from emu.frontend.torchref import torch_forward
    from emu.runtime.run import quantize_input, run_program
    from emu.zoo.vision import _quantizer
    torch.manual_seed(0)
    x = torch.randn(8, 3, 24)
    ep = export(quantize(ReadsAudioChannels().eval(), _quantizer(quantizer, 8, 8), x), x)
    graph = lower(ep)
    assert graph.input_layout == "ncl" and graph.tensors[graph.input].shape == (1, 24, 3)
    program = compile_graph(graph, AccelConfig(rows=4, cols=4))
    ours = program.output.qparams.dequantize(run_program(program, quantize_input(program, x.numpy())).output)
    theirs = np.asarray(torch_forward(ep, x.numpy()), np.float32)
    assert np.abs(ours - theirs).max() <= program.output.qparams.scale * 1.01


class Concatenates(torch.nn.Module):
    """Two convs side by side, then a max pool and a conv reading the concatenation."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Conv2d(2, 4, 1)
        self.c, self.fc = torch.nn.Conv2d(7, 4, 3, padding=1), torch.nn.Linear(4 * 9, 5)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.fc(torch.relu(self.c(F.max_pool2d(y, 2))).flatten(1))


@pytest.mark.parametrize("quantizer, copies", [("systola", 0), ("xnnpack", 1)])
def test_cat_is_a_memory_layout(quantizer, copies):
    """A channel cat is a Concat: the two convs store into its region; with XNNPACK (the cat quantized after
    the max pool, the second conv at a scale of its own) the second is first requantized into it by a 1x1
    max pool. Golden ==
    reference on every layer, torch within 1 LSB on every layer and end to end."""
    import io
    from emu.contract.config import AccelConfig
    from emu.frontend.torchref import torch_forward
    from emu.runtime.run import get_backend
    from emu.runtime.verify import verify
    from emu.zoo.vision import _quantizer
    torch.manual_seed(0)
    x = torch.randn(8, 2, 6, 6)
    ep = export(quantize(Concatenates().eval(), _quantizer(quantizer, 8, 8), x), x)
    graph = lower(ep, host=False)
    kinds = [type(n).__name__ for n in graph.nodes]
    assert kinds.count("Concat") == 1
    assert sum(n.source.endswith("(a copy into it)") for n in graph.nodes) == copies
    log = io.StringIO()
    assert verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), {"golden": get_backend("golden")}, out=log), \
        log.getvalue()
    diff = float(log.getvalue().split("max |diff| ")[1].split()[0])
    assert diff <= 1.01 * graph.tensors[graph.output].qparams.scale


class ConcatenatesTokens(torch.nn.Module):
    """Two linears over the tokens of a patch-embedded image, concatenated along the tokens (dim 1)."""

    def __init__(self):
        super().__init__()
        self.conv, self.a, self.b = torch.nn.Conv2d(3, 8, 2, 2), torch.nn.Linear(8, 6), torch.nn.Linear(8, 6)
        self.fc = torch.nn.Linear(6, 2)

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)
        return self.fc(torch.cat([torch.relu(self.a(t)), torch.relu(self.b(t))], 1)).mean(1)


def test_cat_along_tokens_is_not_a_channel_concat():
    """Dimension 1 of tokens [B, N, D] is not the channels (the last is): the cat runs on the host, and
    verify passes (as a channel Concat it failed)."""
    import io
    from emu.contract.config import AccelConfig
    from emu.runtime.run import get_backend
    from emu.runtime.verify import verify
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    ep = export(quantize(ConcatenatesTokens().eval(), SystolaQuantizer(), x), x)
    graph = lower(ep)
    assert "Concat" not in [type(n).__name__ for n in graph.nodes]
    log = io.StringIO()
    assert verify(ep, graph, AccelConfig(rows=4, cols=4), x.numpy(), {"golden": get_backend("golden")}, out=log), \
        log.getvalue()
