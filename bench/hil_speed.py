"""HIL speed and utilization on 8x8 W8A8: a 256x256x256 matmul, RTL (cocotb + HDL memory) vs golden.

Prints, all from one invocation on one machine:
- HIL speed: accelerator cycles (CYCLES register) per wall second of the cocotb-driven run (HDL clock,
  HDL memory, one await on done), divided by the same Verilog in a plain `verilator --binary` harness
  (bench/ceiling.py: no cocotb, no VPI; the ceiling). Both time the stretch from the CTRL write to done
  inside the simulator; the totals with image write, simulator start, $readmemh and dump come second,
  then a batch's rate: several runs in one simulator start (sim/hil.py RtlSession), end to end.
- RTL cycles vs golden cycles (the cycle model's error).
- array utilization vs the ideal weight-stationary count: folds back to back, T cycles each (R at least),
  and the last one's R + C - 2 out of the array
  (folds = ceil(K/R) * ceil(N/C), T = M).

Layout (a compiler's choice, made here by hand): A as [K/8][M][8] so one ACT chunk is one contiguous
span, W as [K/8][N/8][8][8] so a group's tiles for one K-tile are one LOAD, C as [N/8][M][8] so one
STORE is one span. Schedule: groups of two N-tiles; per K-tile step two MATMULs back to back, with the
next step's loads issued behind the first (double-buffered ACT and WGT) and one SYNC. ACC and OUT are
double-buffered between groups, so a group's POSTs (their own unit) and STOREs run behind the next
group's MATMULs. Run: python bench/hil_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emu.contract import isa, numerics  # noqa: E402
from emu.contract.config import AccelConfig, PARAM_DTYPE  # noqa: E402
from emu.emulator.golden import Golden  # noqa: E402
from emu.contract.isa import Buffer, Opcode  # noqa: E402


def matmul_program(cfg: AccelConfig, M: int, K: int, N: int, seed: int = 0):
    R, C = cfg.rows, cfg.cols
    kt_n, nt_n, group = K // R, N // C, min(cfg.acc_depth, cfg.out_depth) // (2 * M)
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (M, K))
    w = rng.integers(-128, 128, (K, N))
    a_base, w_base, p_base, c_base, prog_base = 1 << 16, 1 << 18, 1 << 20, 1 << 21, 0
    mem = np.zeros(1 << 22, np.uint8)
    mem[a_base:a_base + M * K] = a.reshape(M, kt_n, R).transpose(1, 0, 2).astype(np.int8).view(np.uint8).reshape(-1)
    mem[w_base:w_base + K * N] = w.reshape(kt_n, R, nt_n, C).transpose(0, 2, 1, 3).astype(np.int8).view(np.uint8).reshape(-1)
    mult, shift = numerics.requant_params(np.full(N, 1.0 / 4096))
    params = np.zeros(N, PARAM_DTYPE)
    params["mult"] = mult
    params = np.frombuffer(params.tobytes(), np.uint8)
    mem[p_base:p_base + params.size] = params

    def load_act(kt):
        return isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=M, row_len=R, buf_addr=(kt % 2) * M,
                        ext_addr=a_base + kt * M * R, ext_stride=R)

    def load_wgt(kt, g, slot):
        """The group's weight tiles for K-tile kt: adjacent in memory, so one LOAD of group * R rows."""
        return isa.make(Opcode.LOAD, buf=Buffer.WGT, rows=group * R, row_len=C, buf_addr=slot * group * R,
                        ext_addr=w_base + (kt * nt_n + g) * R * C, ext_stride=C)

    prog = [isa.make(Opcode.LOAD, buf=Buffer.PARAM, rows=nt_n, row_len=C, buf_addr=0, ext_addr=p_base,
                     ext_stride=PARAM_DTYPE.itemsize * C)]
    steps = [(g, kt) for g in range(0, nt_n, group) for kt in range(kt_n)]
    prog += [load_act(0), load_wgt(0, 0, 0), isa.make(Opcode.SYNC)]
    posts, stores = [], []   # the previous group's POSTs and STOREs, overlapped with this group's steps

    def half(g):             # ACC and OUT are double-buffered between groups
        return (g // group) % 2 * group * M

    for i, (g, kt) in enumerate(steps):
        for nt in range(g, g + group):
            prog.append(isa.make(Opcode.MATMUL, rows=M, act_addr=(kt % 2) * M, wgt_addr=((i % 2) * group + nt - g) * R,
                                 acc_addr=half(g) + (nt - g) * M, accumulate=int(kt > 0), k_valid=R, n_valid=C))
            # behind each MATMUL of a group's first step: one of the previous group's POSTs (the other ACC
            # half; one each, so the second does not hold up the next MATMUL's issue while the first runs)
            if posts:
                prog.append(posts.pop(0))
            if nt == g:
                # behind the first MATMUL: the next step's activations and weights into the other slots, and
                # once the POSTs are done (after a SYNC) one of the previous group's STOREs
                if i + 1 < len(steps):
                    g2, kt2 = steps[i + 1]
                    prog += [load_act(kt2), load_wgt(kt2, g2, (i + 1) % 2)]
                if kt > 0 and stores:
                    prog.append(stores.pop(0))
        prog.append(isa.make(Opcode.SYNC))
        if i + 1 == len(steps) or steps[i + 1][0] != g:
            prog += stores   # whatever the group could not hide
            posts = [isa.make(Opcode.POST, rows=M, acc_addr=half(g) + (nt - g) * M, out_addr=half(g) + (nt - g) * M,
                              param_addr=nt, shift=shift, zero_point=0, clamp_lo=-128, clamp_hi=127)
                     for nt in range(g, g + group)]
            stores = [isa.make(Opcode.STORE, buf=Buffer.OUT, rows=M, row_len=C, buf_addr=half(g) + (nt - g) * M,
                               ext_addr=c_base + nt * M * C, ext_stride=C) for nt in range(g, g + group)]
    prog += posts + [isa.make(Opcode.SYNC)] + stores + [isa.make(Opcode.SYNC)]
    folds = len(steps) * group
    prog.append(isa.make(Opcode.END))
    blob = np.frombuffer(isa.encode_program(prog), np.uint8)
    mem[prog_base:prog_base + blob.size] = blob
    expect = np.clip(numerics.round_shift((a @ w) * mult, shift), -128, 127)
    return mem, prog_base, len(prog), folds, (c_base, expect)


SESSION_RUNS = 8


def eval_rates(ceiling_rate: float, images: int = 64, batch: int = 4) -> None:
    """What `systola eval --backend rtl` does with the digits CNN: `images` held-out images in runs of `batch`
    through one RtlSession; accelerator cycles per second inside the simulator and end to end (simulator
    start, image writes, runs, dumps and read-backs)."""
    from emu.compiler.codegen import compile_graph
    from emu.frontend import load_pt2, lower
    from emu.runtime.run import quantize_input, run_program
    from emu.zoo import digits
    from sim.hil import RtlSession
    program = compile_graph(lower(load_pt2(digits.checkpoint("w8a8", "cnn"))), AccelConfig(), batch=batch)
    x = quantize_input(program, digits.load_split("cnn")[2][:images])
    t = time.time()
    with RtlSession(program.cfg, program.image.size) as session:
        out = run_program(program, x, backend=session)
    wall = time.time() - t
    print(f"digits CNN, {images} images in runs of {batch} on the RTL (one simulator start): {out.cycles} cycles, "
          f"{out.cycles / session.sim_seconds / 1e3:.0f} k cycles/s inside the simulator, "
          f"{out.cycles / wall / 1e3:.0f} k cycles/s end to end in {wall:.1f} s, "
          f"{out.cycles / wall / ceiling_rate:.2f} of the plain Verilator run's rate")


def main() -> None:
    from ceiling import build_ceiling, run_ceiling
    from sim.hil import simulate
    from sim.runner import build
    M = K = N = 256
    cfg = AccelConfig(rows=8, cols=8, instr_depth=8192)
    mem, pa, pl, folds, (c_base, expect) = matmul_program(cfg, M, K, N)
    t = time.time()
    build(cfg)
    build_ceiling(cfg)
    print(f"builds (or cache hits), cocotb and plain Verilator: {time.time() - t:.1f} s")
    g_mem = mem.copy()
    t = time.time()
    g = Golden(cfg, g_mem).run(pa, pl)
    print(f"golden: {g.cycles} cycles, {g.macs} MACs, {time.time() - t:.2f} s")

    hil = simulate(cfg, mem.copy(), pa, pl)
    ceil = run_ceiling(cfg, mem.copy(), pa, pl)
    r = hil.result
    hil_rate, ceil_rate = r.cycles / hil.run_seconds, ceil.cycles / ceil.run_seconds
    print(f"cocotb run (CTRL write to done): {r.cycles} cycles in {hil.run_seconds:.3f} s = "
          f"{hil_rate / 1e3:.0f} k cycles/s")
    print(f"plain Verilator run (same span): {ceil.cycles} cycles in {ceil.run_seconds:.3f} s = "
          f"{ceil_rate / 1e3:.0f} k cycles/s")
    print(f"HIL speed ratio (cocotb / plain Verilator): {hil_rate / ceil_rate:.2f}")
    print(f"totals with image write, simulator start, $readmemh, dump and read-back: cocotb "
          f"{hil.total_seconds:.2f} s ({r.cycles / hil.total_seconds / 1e3:.0f} k cycles/s), plain Verilator "
          f"{ceil.total_seconds:.2f} s ({ceil.cycles / ceil.total_seconds / 1e3:.0f} k cycles/s), ratio "
          f"{ceil.total_seconds / hil.total_seconds:.2f}")
    # a batch on the RTL: one simulator start, then a run per chunk (what run_program does)
    from sim.hil import RtlSession
    t = time.time()
    with RtlSession(cfg, mem.size) as session:
        for _ in range(SESSION_RUNS):
            session(cfg, mem.copy(), [(pa, pl)])
    wall = time.time() - t
    print(f"{SESSION_RUNS} runs in one simulator start (RtlSession), end to end: {SESSION_RUNS * r.cycles} cycles in "
          f"{wall:.2f} s = {SESSION_RUNS * r.cycles / wall / 1e3:.0f} k cycles/s, "
          f"{SESSION_RUNS * r.cycles / wall / ceil_rate:.2f} of the plain Verilator run's rate")
    eval_rates(ceil_rate)
    print(f"cycle model error: {r.cycles - g.cycles} cycles ({(r.cycles - g.cycles) / g.cycles:+.3%}); "
          f"plain Verilator cycles {ceil.cycles}")
    print(f"memory identical to golden: cocotb {np.array_equal(hil.memory, g_mem)}, plain Verilator "
          f"{np.array_equal(ceil.memory, g_mem)}")
    c = hil.memory[c_base:c_base + M * N].view(np.int8).reshape(N // cfg.cols, M, cfg.cols).transpose(1, 0, 2).reshape(M, N)
    print(f"result equals numpy: {np.array_equal(c, expect)}")
    ideal = folds * max(M, cfg.rows) + cfg.rows + cfg.cols - 2
    print(f"utilization: {r.macs / (r.cycles * cfg.macs):.1%} of the array over the run; ideal weight-"
          f"stationary count {ideal} cycles ({M * K * N / (ideal * cfg.macs):.1%}); "
          f"RTL/ideal cycles = {r.cycles / ideal:.3f}, so the RTL reaches {ideal / r.cycles:.1%} of ideal")


if __name__ == "__main__":
    main()
