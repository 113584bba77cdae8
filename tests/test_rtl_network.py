"""Hardware in the loop on a real network: the shipped digits MLP on the simulated RTL (Verilator) equals
the golden emulator and the integer reference on every element of every layer, and in cycles."""
import numpy as np
import pytest

from emu.compiler import compile_graph
from emu.config import AccelConfig
from emu.frontend import load_pt2, lower
from emu.reference import run_reference
from emu.runtime import get_backend, quantize_input, run_program
from emu.zoo import digits

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("rows, cols", [(8, 8), (3, 5)])
def test_digits_mlp_on_verilator(rows, cols):
    graph = lower(load_pt2(digits.checkpoint("w8a8")))
    program = compile_graph(graph, AccelConfig(rows=rows, cols=cols), batch=16)
    xq = quantize_input(program, digits.load_split()[2][:16])
    rtl = run_program(program, xq, backend=get_backend("rtl"))
    gold = run_program(program, xq)
    ref = run_reference(graph, xq)
    for node in graph.nodes:
        np.testing.assert_array_equal(rtl.layers[node.output], ref[node.output], err_msg=node.name)
        np.testing.assert_array_equal(gold.layers[node.output], ref[node.output], err_msg=node.name)
    assert (rtl.cycles, rtl.macs) == (gold.cycles, gold.macs)
