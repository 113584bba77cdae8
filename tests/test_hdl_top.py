"""The whole accelerator (hdl.top): its generated Verilog lints clean."""
from emu.contract.config import AccelConfig


def test_generated_verilog_lints_clean():
    from sim.lint import lint
    from sim.runner import verilog_for
    lint(verilog_for(AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64,
                                 param_depth=8, instr_depth=128)))
