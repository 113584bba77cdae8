"""Published architectures at their real resolutions (emu/zoo/vision.py), quantized with Systola's and
torchao's XNNPACK-style quantizers: each compiles at 8x8 and 16x16, and `verify` on golden passes (golden ==
integer reference on every element, torch's Q/DQ graph within 1 LSB)."""
import io

import pytest

from emu.compiler.codegen import compile_graph
from emu.contract.config import AccelConfig
from emu.frontend import lower
from emu.runtime.run import get_backend
from emu.runtime.verify import verify
from emu.zoo.vision import quantized

ARRAYS = (AccelConfig(), AccelConfig(rows=16, cols=16))


def check_verifies(net: str, quantizer: str, resolution: int | None = None):
    ep, x = quantized(net, quantizer=quantizer, resolution=resolution)
    graph = lower(ep)
    for cfg in ARRAYS:
        log = io.StringIO()
        assert verify(ep, graph, cfg, x[:1].numpy(), {"golden": get_backend("golden")}, batch=1, out=log), \
            log.getvalue()
    return graph


@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
@pytest.mark.parametrize("net", ["lenet5", "resnet20", "m5"])
def test_small_networks_verify(net, quantizer):
    check_verifies(net, quantizer)


def test_mobilenet_v3_small_with_host_ops_verifies():
    """Hardswish, hardsigmoid and the squeeze-excitation multiply run as host ops between segments."""
    check_verifies("mobilenet_v3_small", "systola", 32)


def test_squeezenet_runs_wholly_on_the_accelerator():
    """SqueezeNet 1.1 at 64x64: ceil-mode max pools, and each Fire module's cat a memory layout (its two
    expansions store their channels side by side): no host op."""
    graph = check_verifies("squeezenet1_1", "systola", 64)
    kinds = [type(n).__name__ for n in graph.nodes]
    assert kinds.count("Concat") == 8 and "Host" not in kinds


def test_shufflenet_v2_with_split_cat_and_shuffle_on_the_host_verifies():
    """ShuffleNetV2 x0.5 at 32x32: a stride-1 unit's chunk (two outputs, read through getitem), cat and
    channel shuffle are host ops; a stride-2 unit's cat of two branches is a memory layout; the convolutions,
    depthwise ones included, run on the accelerator."""
    graph = check_verifies("shufflenet_v2_x0_5", "systola", 32)
    assert [type(n).__name__ for n in graph.nodes].count("Concat") == 3


def test_mobilenet_v2_with_xnnpack_requantized_flatten_verifies():
    """MobileNetV2 at 32x32, XNNPACK-quantized: the classifier's dropout requantizes the flattened map, which
    stays a map in the IR."""
    check_verifies("mobilenet_v2", "xnnpack", 32)


@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
@pytest.mark.parametrize("net", ["vit_tiny", "mixer_tiny"])
def test_transformers_run_their_linears_on_the_accelerator(net, quantizer):
    """A tiny ViT and MLP-Mixer: every linear layer over tokens is a 1x1 convolution over a 1 x N map on the
    accelerator; LayerNorm, GELU, attention and the transposes are host ops."""
    graph = check_verifies(net, quantizer)
    hosts = [n for n in graph.nodes if type(n).__name__ == "Host"]
    assert not any("linear" in op for n in hosts for op in n.ops)


@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
@pytest.mark.parametrize("net", ["lstm", "gru"])
def test_recurrent_networks_verify(net, quantizer):
    """Explicit LSTM and GRU cells over 8 steps: every linear layer and (where the quantizer quantizes
    their input) the gates' sigmoid and tanh on the accelerator, the gates' products on the host."""
    graph = check_verifies(net, quantizer)
    kinds = [type(n).__name__ for n in graph.nodes]
    assert kinds.count("Dense") >= 7 and "Host" in kinds
    if quantizer == "xnnpack":
        assert any(getattr(n, "activation", None) is not None for n in graph.nodes)


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
@pytest.mark.parametrize("net, resolution", [("mobilenet_v2", 32), ("mobilenet_v2", 96), ("mobilenet_v2", None),
                                             ("efficientnet_b0", 32), ("efficientnet_b0", None),
                                             ("shufflenet_v2_x0_5", 32), ("shufflenet_v2_x0_5", None)])
def test_mobile_networks_verify(net, resolution, quantizer):
    """MobileNetV2, EfficientNet-B0 and ShuffleNetV2 x0.5 at their resolutions; a few minutes each at 224x224."""
    check_verifies(net, quantizer, resolution)


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", ["systola", "xnnpack"])
@pytest.mark.parametrize("net, resolution", [("mobilenet_v3_small", 32), ("mobilenet_v3_small", None),
                                             ("squeezenet1_1", 64), ("squeezenet1_1", None),
                                             ("vgg11", None), ("resnet18", 64), ("resnet18", None)])
def test_large_networks_verify(net, resolution, quantizer):
    """VGG-11 at 32x32 and ResNet-18 at 64x64 take 1-2 minutes each on golden; ResNet-18 at 224x224 longer."""
    check_verifies(net, quantizer, resolution)


def test_resnet18_at_224_compiles():
    """112x112x64 after the stem, 56x56 after the pool: bands of output rows, folded into hardware loops
    (10,300 instructions with loops at 8x8, docs/networks.md), a program of a few runs."""
    ep, _ = quantized("resnet18")
    program = compile_graph(lower(ep), AccelConfig(), batch=1)
    assert program.prog_len < 12_000 and 1 < len(program.segments) < 10
    assert max(n for _, n in program.segments) <= program.cfg.instr_depth


@pytest.mark.slow
def test_resnet18_at_224_compiles_at_3x5():
    ep, _ = quantized("resnet18")
    program = compile_graph(lower(ep), AccelConfig(rows=3, cols=5), batch=1)
    assert program.prog_len < 50_000 and len(program.segments) > 1
