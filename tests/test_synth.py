"""`systola synth`: argument checking (fast) and one real Yosys + nextpnr run on a small configuration."""
import json

import pytest

from emu.cli.main import main
from emu.contract.config import AccelConfig
from hdl.fpga.flow import BOARDS, REPORT_FIELDS, SynthError, check_fits, estimate, parse_target, synthesize
from hdl.fpga.ecp5 import pll_dividers as ecp5_pll_dividers

from rtlcheck import SMALL


def systola(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


BAD = [
    (["--board", "arty"], "board 'arty' is not accepted: expected one of ulx3s-85f"),
    (["--device", "XC7A35T"], "device 'XC7A35T' is not accepted: expected LFE5U-"),
    (["--device", "LFE5U-85F-6", "--freq", "0"], "freq=0.0 MHz is not accepted"),
    (["--board", "icebreaker"], "needs 64 hard multipliers"),
    (["--device", "LFE5U-25F-6", "--rows", "16", "--cols", "16"], "needs 256 hard multipliers"),
    (["--device", "LFE5U-85F-6", "--rows", "0"], "rows=0 is not accepted"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_before_any_tool(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "syn"
    code, out, err = systola(capsys, "synth", *argv, "--out", out_dir)
    assert code == 2 and out == ""
    assert err.startswith("systola: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_targets():
    assert parse_target(device="lfe5u-85f-6").nextpnr_args == ("--85k", "--speed", "6", "--package", "CABGA381")
    assert parse_target(board="ulx3s-85f").device == "LFE5U-85F-6"
    assert parse_target(device="iCE40UP5K-SG48").family == "ice40"
    assert set(BOARDS) >= {"ulx3s-85f", "ulx3s-25f", "orangecrab-25f", "icebreaker"}
    with pytest.raises(SynthError, match="exactly one of"):
        parse_target(board="ulx3s-85f", device="LFE5U-85F-6")
    # W4A4 products are built in logic (no DSP), and small buffers fit the UP5K's 30 block RAMs ...
    check_fits(AccelConfig(rows=4, cols=1, act_bits=4, weight_bits=4, act_depth=256, wgt_depth=64,
                           acc_depth=64, out_depth=64, param_depth=8, instr_depth=64), parse_target(board="icebreaker"))
    # ... but the default buffer depths do not fit its 30 block RAMs
    with pytest.raises(SynthError, match="block RAMs but iCE40UP5K has 30"):
        check_fits(AccelConfig(rows=2, cols=2, act_bits=4, weight_bits=4), parse_target(board="icebreaker"))


def test_ecp5_buffer_deeper_than_one_block_ram_is_refused():
    with pytest.raises(SynthError, match="depth of 32768 entries is not accepted on LFE5U-85F-6: at most 16384"):
        check_fits(AccelConfig(rows=2, cols=2, act_depth=32768), parse_target(device="LFE5U-85F-6"))


def test_pll_dividers():
    assert ecp5_pll_dividers(clkin_mhz=25, clkout_mhz=150) == (1, 6, 3, 150.0)   # VCO 450 MHz
    with pytest.raises(ValueError, match="500 MHz is not accepted"):
        ecp5_pll_dividers(clkin_mhz=25, clkout_mhz=500)


@pytest.mark.synth
def test_synth_small_ecp5(tmp_path):
    """The smallest accelerator (1x1 W2A2, 16-bit accumulators, a 32-bit bus, small buffers: its control is
    most of it) through Yosys and nextpnr on LFE5U-25F: every field is a number the tools reported."""
    cfg = AccelConfig(rows=1, cols=1, act_bits=2, weight_bits=2, acc_bits=16, bus_bits=32, **SMALL)
    report = synthesize(cfg, parse_target(device="LFE5U-25F-6"), str(tmp_path), freq_mhz=100, quiet=True)
    with open(tmp_path / "report.json") as f:
        assert json.load(f) == json.loads(json.dumps(report))
    for field in REPORT_FIELDS:
        assert field in report
    with open(tmp_path / "build" / "nextpnr.json") as f:
        pnr = json.load(f)
    util = {k: v["used"] for k, v in pnr["utilization"].items()}
    assert report["luts"] == util["TRELLIS_COMB"] > 500
    assert report["ffs"] == util["TRELLIS_FF"] > 500
    assert report["brams"] == util["DP16KD"] == estimate(cfg, parse_target(device="LFE5U-25F-6"))["brams"]
    assert report["dsps"] == util["MULT18X18D"] == 0        # 2-bit products and the rest in logic
    assert report["fmax_mhz"] == round(min(c["achieved"] for c in pnr["fmax"].values()), 2) > 10
    assert report["timing_met"] == (report["fmax_mhz"] >= 100)
    assert report["seconds"] > 0 and report["bitstream"] is None
