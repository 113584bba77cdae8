"""Whole-accelerator random programs on the RTL: memory, cycles and MACs equal to the golden emulator."""
import pytest

from randprog import random_case, random_loop_case, split_case

from rtlcheck import CFG_2X7, CFG_3X5, CFG_W1A1, CFG_W1A3, CFG_W4A4, assert_same_as_golden

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("seed", range(4))
def test_random_3x5(seed):
    mem, pa, pl, _ = random_case(CFG_3X5, seed)
    assert_same_as_golden(CFG_3X5, mem, pa, pl)


@pytest.mark.parametrize("seed", range(4))
def test_random_w4a4(seed):
    mem, pa, pl, _ = random_case(CFG_W4A4, 100 + seed)
    assert_same_as_golden(CFG_W4A4, mem, pa, pl)


@pytest.mark.parametrize("cfg,seed", [(CFG_W1A3, 0), (CFG_W1A3, 2),
                                      pytest.param(CFG_W1A1, 1, marks=pytest.mark.slow)])   # its own build
def test_random_binary(cfg, seed):
    """Random bytes into 1-bit buffers: a weight keeps its byte's sign bit (-1 or +1), a 1-bit activation
    its low bit, on the RTL as in golden."""
    mem, pa, pl, _ = random_case(cfg, 400 + seed)
    assert_same_as_golden(cfg, mem, pa, pl)


@pytest.mark.parametrize("seed", range(2))
def test_random_128bit_bus(seed):
    mem, pa, pl, _ = random_case(CFG_2X7, 200 + seed)
    assert_same_as_golden(CFG_2X7, mem, pa, pl)


@pytest.mark.parametrize("seed", range(2))
def test_random_program_in_runs_3x5(seed):
    """The program cut into three runs after random SYNCs: the RTL carries the buffers over as golden does."""
    mem, pa, pl, _ = random_case(CFG_3X5, 300 + seed)
    (first, *then) = split_case(mem, pa, pl, seed)
    assert_same_as_golden(CFG_3X5, mem, *first, then=then)


@pytest.mark.parametrize("cfg,seed", [(CFG_3X5, 0), (CFG_3X5, 1), (CFG_W4A4, 2), (CFG_2X7, 3)])
def test_random_loops(cfg, seed):
    """Two-level hardware loops stepping every increment, of either sign: the RTL's fetch walks them as
    golden does, cycle for cycle."""
    mem, pa, pl = random_loop_case(cfg, 500 + seed)
    assert_same_as_golden(cfg, mem, pa, pl)
