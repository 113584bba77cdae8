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
