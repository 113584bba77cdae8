"""The compile-time cycle profile equals what golden counts, run by run and layer by layer."""
import numpy as np

from emu.compiler.codegen import compile_graph
from emu.compiler.profile import cycle_profile, profile_table
from emu.contract.config import AccelConfig
from emu.runtime.run import run_program
from graphs import NetBuilder, random_input
from rtlcheck import SMALL


def test_profile_totals_equal_golden_on_a_banded_program_of_several_segments():
    rng = np.random.default_rng(12)
    b = NetBuilder(rng, (14, 10, 5))
    x = b.conv(6, padding=(1, 1, 1, 1))
    b.add(x, b.conv(6, padding=(1, 1, 1, 1)))
    b.pool("avg")
    b.dense(7)
    graph = b.graph()
    cfg = AccelConfig(rows=3, cols=5, **SMALL)
    program = compile_graph(graph, cfg, batch=2)
    assert len(program.segments) > 1
    out = run_program(program, random_input(rng, graph, 2))
    layers = cycle_profile(program)
    assert [l.name for l in layers] == [n.name for n in graph.nodes]
    assert sum(l.cycles for l in layers) == out.cycles
    assert sum(l.macs for l in layers) == out.macs
    assert sum(l.instructions for l in layers) + len(program.segments) == program.prog_len
    assert profile_table(program).splitlines()[-1].startswith("total")


def test_a_depthwise_layer_counts_its_own_macs_not_its_zero_blocks():
    """A depthwise conv runs as a dense weight with zero blocks: the array issues (and the MAC counter
    counts) every lane of its tiles, the profile's utilization counts the layer's own MACs, torch's count."""
    import torch
    from emu.frontend import SystolaQuantizer, lower
    from test_frontend_quantizer import export, quantize
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6, 6)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw, self.pw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.pw(torch.relu(self.dw(x)))
    model = Net()
    graph = lower(export(quantize(model, SystolaQuantizer(), x), x))
    program = compile_graph(graph, AccelConfig(rows=4, cols=4), batch=1)
    dw, pw = cycle_profile(program)
    assert (dw.kind, pw.kind) == ("Conv2d 3x3/1 dw", "Conv2d 1x1/1")
    assert dw.network_macs == 6 * 6 * 8 * 3 * 3 and dw.macs == 4 * dw.network_macs    # 4 channels per tile
    assert pw.network_macs == pw.macs == 6 * 6 * 4 * 8
