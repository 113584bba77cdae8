"""Hardware in the loop on real networks: the shipped digits MLP and residual CNN (stride-2 conv, padding,
residual add, max and global average pooling) on the simulated RTL (Verilator) equal the golden emulator
and the integer reference on every element of every layer, and in cycles."""
import numpy as np
import pytest

from emu.compiler import compile_graph
from emu.config import AccelConfig
from emu.frontend import load_pt2, lower
from emu.reference import run_reference
from emu.runtime import get_backend, quantize_input, run_program
from emu.zoo import digits

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("model, tag, rows, cols, n", [("mlp", "w8a8", 8, 8, 16), ("mlp", "w8a8", 3, 5, 16),
                                                      ("cnn", "w4a4", 8, 8, 4)])
def test_digits_network_on_verilator(model, tag, rows, cols, n):
    graph = lower(load_pt2(digits.checkpoint(tag, model)))
    program = compile_graph(graph, AccelConfig(rows=rows, cols=cols), batch=n)
    xq = quantize_input(program, digits.load_split(model)[2][:n])
    rtl = run_program(program, xq, backend=get_backend("rtl"))
    gold = run_program(program, xq)
    ref = run_reference(graph, xq)
    for node in graph.nodes:
        np.testing.assert_array_equal(rtl.layers[node.output], ref[node.output], err_msg=node.name)
        np.testing.assert_array_equal(gold.layers[node.output], ref[node.output], err_msg=node.name)
    assert (rtl.cycles, rtl.macs) == (gold.cycles, gold.macs)
