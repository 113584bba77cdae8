"""Waveforms of RTL runs: `systola run --backend rtl --waves FILE.fst` writes an FST of the accelerator's
signals where asked, also when the run ends in a fault or the testbench's cycle limit."""
import ctypes
import ctypes.util
import json
import re
import struct
import zlib

import pytest

from emu.cli.main import main
from emu.compiler.program import Program
from emu.zoo import digits

from rtlcheck import CFG_3X5, needs_iverilog

pytestmark = pytest.mark.rtl

FST_HEADER, FST_HIERARCHY_GZIP, FST_HIERARCHY_LZ4 = 0, 4, 6


def _lz4_block(data: bytes, size: int) -> bytes:
    lz4 = ctypes.CDLL(ctypes.util.find_library("lz4"))  # Verilator's FST writer links the same library
    out = ctypes.create_string_buffer(size)
    assert lz4.LZ4_decompress_safe(data, out, len(data), size) == size
    return out.raw


def fst_hierarchy(path) -> bytes:
    """The uncompressed hierarchy block of an FST file (scope and signal records, names NUL-terminated).

    An FST file is a sequence of blocks: type (1 byte), length (8 bytes, big-endian, counting itself),
    payload; the hierarchy payload is its uncompressed length (8 bytes) and a gzip stream or LZ4 block.
    """
    data = path.read_bytes()
    assert data[0] == FST_HEADER, f"{path} is not an FST file"
    pos = 0
    while pos < len(data):
        kind, length = data[pos], struct.unpack(">Q", data[pos + 1:pos + 9])[0]
        size, payload = struct.unpack(">Q", data[pos + 9:pos + 17])[0], data[pos + 17:pos + 1 + length]
        if kind == FST_HIERARCHY_GZIP:
            return zlib.decompress(payload, 16 + zlib.MAX_WBITS)
        if kind == FST_HIERARCHY_LZ4:
            return _lz4_block(payload, size)
        pos += 1 + length
    raise AssertionError(f"{path} has no hierarchy block")


def has_signal(hierarchy: bytes, name: str) -> bool:
    return re.search(rb"(?<![A-Za-z0-9_$])" + re.escape(name.encode()) + rb"[\0 \[]", hierarchy) is not None


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    out = tmp_path_factory.mktemp("prog") / "out"
    cfg = tmp_path_factory.mktemp("cfg") / "cfg.json"
    cfg.write_text(json.dumps(CFG_3X5.to_dict()))      # small buffers: the traced build is the suite's longest
    assert main(["compile", digits.checkpoint("w8a8"), "-o", str(out), "--config", str(cfg), "--batch", "1"]) == 0
    x = tmp_path_factory.mktemp("in") / "x.npy"
    import numpy as np
    np.save(x, digits.load_split()[2][:1])
    return out, x


# Icarus builds in seconds, the traced Verilator build in minutes (`make test-all`)
SIMULATORS = [pytest.param("icarus", marks=needs_iverilog), pytest.param("verilator", marks=pytest.mark.slow)]


@pytest.mark.parametrize("sim", SIMULATORS)
def test_run_writes_fst_with_accelerator_signals(capsys, program, tmp_path, sim):
    out, x = program
    waves = tmp_path / "run.fst"
    code = main(["run", str(out), "--input", str(x), "--output", str(tmp_path / "y.npy"), "--backend", "rtl",
                 "--sim", sim, "--waves", str(waves)])
    assert code == 0, capsys.readouterr().err
    hierarchy = fst_hierarchy(waves)
    for name in ("accel", "mem", "clk", "done", "m_axi_arvalid", "s_axil_awaddr"):
        assert has_signal(hierarchy, name), name


@pytest.mark.parametrize("sim", SIMULATORS)
def test_watchdog_fault_is_one_line_and_leaves_fst(capsys, program, tmp_path, sim):
    out, x = program
    waves = tmp_path / "hung.fst"
    code = main(["run", str(out), "--input", str(x), "--output", str(tmp_path / "y.npy"), "--backend", "rtl",
                 "--sim", sim, "--waves", str(waves), "--watchdog", "60"])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1 and "hardware fault WATCHDOG" in err and str(waves) in err
    assert has_signal(fst_hierarchy(waves), "accel")
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("sim", SIMULATORS)
def test_simulation_cycle_limit_names_the_waves(program, tmp_path, sim):
    from sim.hil import SimulationTimeout, run_rtl
    prog = Program.load(program[0])
    waves = tmp_path / "limit.fst"
    with pytest.raises(SimulationTimeout, match="ran 200 cycles without done") as info:
        run_rtl(prog.cfg, prog.image.copy(), *prog.starts()[0], simulator=sim, waves=waves, max_cycles=200)
    assert str(waves) in str(info.value)
    assert has_signal(fst_hierarchy(waves), "done")
