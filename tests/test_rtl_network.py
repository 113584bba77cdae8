"""Hardware in the loop on real networks: the shipped digits MLP and residual CNN (stride-2 conv, padding,
residual add, max and global average pooling) on the simulated RTL (Verilator) equal the golden emulator
and the integer reference on every element of every layer, and in cycles."""
import numpy as np
import pytest

from emu.compiler.codegen import compile_graph
from emu.contract.config import AccelConfig
from emu.frontend import load_pt2, lower
from emu.emulator.reference import run_reference
from emu.runtime.run import get_backend, quantize_input, run_program
from emu.zoo import digits

from rtlcheck import CFG_3X5

pytestmark = pytest.mark.rtl


def assert_rtl_equals_golden_and_reference(graph, program, xq):
    """Run `program` on the RTL and on golden: every layer equal to the integer reference, cycles and MACs
    equal. Returns the RTL's RunOutput."""
    rtl = run_program(program, xq, backend=get_backend("rtl"))
    gold = run_program(program, xq)
    ref = run_reference(graph, xq)
    for node in graph.nodes:
        np.testing.assert_array_equal(rtl.layers[node.output], ref[node.output], err_msg=node.name)
        np.testing.assert_array_equal(gold.layers[node.output], ref[node.output], err_msg=node.name)
    assert (rtl.cycles, rtl.macs) == (gold.cycles, gold.macs)
    return rtl


# 3x5 with the random programs' small buffers (one build for both): the MLP runs in 13 segments
@pytest.mark.parametrize("model, tag, cfg, n", [("mlp", "w8a8", AccelConfig(), 16), ("mlp", "w8a8", CFG_3X5, 16),
                                               ("cnn", "w4a4", AccelConfig(), 4)], ids=["mlp-8x8", "mlp-3x5", "cnn-8x8"])
def test_digits_network_on_verilator(model, tag, cfg, n):
    graph = lower(load_pt2(digits.checkpoint(tag, model)))
    program = compile_graph(graph, cfg, batch=n)
    xq = quantize_input(program, digits.load_split(model)[2][:n])
    assert_rtl_equals_golden_and_reference(graph, program, xq)


@pytest.mark.slow
@pytest.mark.parametrize("model, tag", [("cnn", "w2a2"), ("mlp", "w4a4")])
def test_whole_held_out_split_on_verilator(model, tag):
    """The long form of the test above: all 450 held-out digits on the RTL, accuracy and cycles equal to
    golden's, every layer equal to the integer reference (`make test-all`; minutes)."""
    from emu.runtime.evaluate import evaluate, load_dataset
    ep = load_pt2(digits.checkpoint(tag, model))
    graph = lower(ep)
    x, y = load_dataset("digits", graph)
    cfg = AccelConfig()
    rtl = evaluate(ep, graph, cfg, x, y, backend=get_backend("rtl"))
    gold = evaluate(ep, graph, cfg, x, y, backend=get_backend("golden"))
    assert rtl.reference_equal and gold.reference_equal
    assert (rtl.accuracy, rtl.cycles_per_inference) == (gold.accuracy, gold.cycles_per_inference)


def test_banded_maps_in_several_runs_on_verilator():
    """Maps larger than the buffers (bands of output rows) and a program longer than instr_depth (runs
    started one after the other in one simulation): RTL == golden == integer reference, cycles equal."""
    from graphs import NetBuilder, random_input
    from rtlcheck import CFG_3X5
    rng = np.random.default_rng(11)
    b = NetBuilder(rng, (12, 9, 3))
    x = b.conv(4, padding=(1, 1, 1, 1))
    b.add(x, b.conv(4, padding=(1, 1, 1, 1)))
    b.pool("max")
    graph = b.graph()
    program = compile_graph(graph, CFG_3X5, batch=2)
    assert len(program.segments) > 1
    xq = random_input(rng, graph, 3)
    assert_rtl_equals_golden_and_reference(graph, program, xq)


def test_concatenation_views_on_verilator():
    """A channel concatenation as a memory layout (SqueezeNet's Fire modules): two layers store their
    channels into one map, a padded conv reads the whole, a conv and a pool read the parts with the whole's
    pixel pitch. RTL == golden == integer reference, cycles equal."""
    from graphs import NetBuilder, random_input
    from rtlcheck import CFG_3X5
    rng = np.random.default_rng(5)
    b = NetBuilder(rng, (6, 5, 4))
    a = b.conv(3, padding=(1, 1, 1, 1))
    part = b.conv(4, kernel=(1, 1), src="x")
    b.conv(5, padding=(1, 1, 1, 1), src=b.concat(a, part))
    b.conv(2, padding=(1, 1, 1, 1), src=part)
    b.pool("max", src=a)
    graph = b.graph()
    program = compile_graph(graph, CFG_3X5, batch=2)
    assert program.input.pitch == 0 and {r.pitch for r in program.layer_regions()} == {0, 7}
    assert_rtl_equals_golden_and_reference(graph, program, random_input(rng, graph, 2))


def test_cifar_resnet20_on_verilator():
    """A real architecture at its real resolution: ResNet-20 (He et al.) at 32x32x3, W8A8, on the default
    8x8 array: maps larger than the buffers, two-level hardware loops, one image. RTL == golden ==
    integer reference on every layer, cycles equal to golden's and to the compile-time profile."""
    from emu.compiler.profile import cycle_profile
    from emu.zoo.vision import quantized
    ep, x = quantized("resnet20")
    graph = lower(ep)
    program = compile_graph(graph, AccelConfig(), batch=1)
    loops = [i for i in program.instructions if i.op.name == "LOOP"]
    assert loops and any(i.acc_inc for i in loops) and any(i.act_ext_inc for i in loops)
    xq = quantize_input(program, x[:1].numpy())
    rtl = assert_rtl_equals_golden_and_reference(graph, program, xq)
    assert rtl.cycles == sum(layer.cycles for layer in cycle_profile(program))


@pytest.mark.slow
def test_resnet18_224_on_verilator():
    """ResNet-18 at 224x224x3, one image, on the default 8x8 array: 59 M cycles, ~2 segments, a 27.7 MB
    memory image (`make test-all`; tens of minutes: docs/networks.md has the measured wall time)."""
    from emu.zoo.vision import quantized
    ep, x = quantized("resnet18", resolution=224)
    graph = lower(ep)
    program = compile_graph(graph, AccelConfig(), batch=1)
    assert_rtl_equals_golden_and_reference(graph, program, quantize_input(program, x[:1].numpy()))


def test_mobilenet_v3_small_on_verilator():
    """MobileNetV3-Small (Howard et al.) at 32x32x3, one image, on the default 8x8 array: hardswish and
    hardsigmoid as activation tables (fused into their layers' POSTs, or a table pass of their own),
    depthwise convolutions, and the squeeze-excitation multiplies as host ops between segments. RTL ==
    golden == integer reference on every layer, cycles equal."""
    from emu.zoo.vision import quantized
    ep, x = quantized("mobilenet_v3_small", resolution=32)
    graph = lower(ep)
    program = compile_graph(graph, AccelConfig(), batch=1)
    assert any(i.op.name == "POST" and i.table for i in program.instructions)
    assert_rtl_equals_golden_and_reference(graph, program, quantize_input(program, x[:1].numpy()))


def test_host_ops_between_segments_on_verilator():
    """A network with host ops (a sigmoid gate, LayerNorm) and a hardswish table: the RTL runs the two
    segments around the host op, every layer equal to golden and the integer reference, cycles equal."""
    from test_compiler_host import HostNet, _x
    from test_frontend_quantizer import export, quantize
    from emu.frontend import SystolaQuantizer
    import torch
    torch.manual_seed(0)
    x = _x(4)
    graph = lower(export(quantize(HostNet().eval(), SystolaQuantizer(), x), x))
    program = compile_graph(graph, AccelConfig(), batch=4)
    assert len(program.segments) == 2
    assert_rtl_equals_golden_and_reference(graph, program, quantize_input(program, x.numpy()))
