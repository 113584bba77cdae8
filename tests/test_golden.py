"""One test per instruction kind: the golden emulator against a direct numpy model, exact equality."""
import numpy as np
import pytest

from emu.contract import isa, numerics
from emu.contract.config import AccelConfig, PARAM_DTYPE
from emu.contract.faults import FaultCode, HardwareFault
from emu.emulator.golden import Golden
from emu.contract.isa import Buffer, Opcode

PROG = 0x4000  # programs go here; data below


def run(cfg, instrs, mem=None, mem_bytes=0x8000):
    """Run `instrs` (END appended; an int is a raw 128-bit word) on a fresh Golden -> (golden, result)."""
    mem = np.zeros(mem_bytes, np.uint8) if mem is None else mem
    words = [i if isinstance(i, int) else isa.encode(i) for i in list(instrs) + [isa.make(Opcode.END)]]
    blob = b"".join(w.to_bytes(isa.INSTR_BYTES, "little") for w in words)
    mem[PROG:PROG + len(blob)] = np.frombuffer(blob, np.uint8)
    g = Golden(cfg, mem)
    return g, g.run(PROG, len(blob) // isa.INSTR_BYTES)


def load(buf, rows, row_len, buf_addr=0, ext_addr=0, ext_stride=None):
    return isa.make(Opcode.LOAD, buf=buf, rows=rows, row_len=row_len, buf_addr=buf_addr, ext_addr=ext_addr,
                    ext_stride=row_len if ext_stride is None else ext_stride)


@pytest.fixture
def rng():
    return np.random.default_rng(1)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_load_act_strided_wraps_and_zero_fills(rng, bits):
    cfg = AccelConfig(rows=5, cols=3, act_bits=bits)
    mem = rng.integers(0, 256, 0x8000).astype(np.uint8)
    g, _ = run(cfg, [load(Buffer.ACT, rows=4, row_len=3, buf_addr=2, ext_addr=101, ext_stride=17)], mem)
    raw = np.stack([mem[101 + 17 * r:101 + 17 * r + 3].view(np.int8) for r in range(4)]).astype(np.int64)
    want = np.zeros((4, 5), np.int64)
    want[:, :3] = numerics.wrap(raw, bits)
    np.testing.assert_array_equal(g.act[2:6], want)


def test_load_blocks_walk_rows_then_blocks(rng):
    cfg = AccelConfig(rows=4, cols=2)
    mem = rng.integers(0, 256, 0x8000).astype(np.uint8)
    instr = isa.make(Opcode.LOAD, buf=Buffer.ACT, rows=3, row_len=2, buf_addr=5, ext_addr=40, ext_stride=7,
                     blocks=4, block_stride=100)
    g, _ = run(cfg, [instr], mem)
    want = np.zeros((12, 4), np.int64)
    for b in range(4):
        for r in range(3):
            a = 40 + 100 * b + 7 * r
            want[3 * b + r, :2] = mem[a:a + 2].view(np.int8)
    np.testing.assert_array_equal(g.act[5:17], want)


def test_load_param_reads_bias_and_multiplier(rng):
    cfg = AccelConfig(rows=2, cols=4)
    rec = np.zeros(3, PARAM_DTYPE)
    rec["bias"], rec["mult"] = rng.integers(-2**62, 2**62, 3), rng.integers(-2**31, 2**31, 3)
    mem = np.zeros(0x8000, np.uint8)
    mem[64:64 + rec.nbytes] = np.frombuffer(rec.tobytes(), np.uint8)
    g, _ = run(cfg, [load(Buffer.PARAM, rows=1, row_len=3, buf_addr=1, ext_addr=64, ext_stride=rec.nbytes)], mem)
    np.testing.assert_array_equal(g.bias[1], list(rec["bias"]) + [0])
    np.testing.assert_array_equal(g.mult[1], list(rec["mult"]) + [0])


@pytest.mark.parametrize("accumulate, reduce_max", [(0, 0), (1, 0), (1, 1), (0, 1)])
def test_matmul(rng, accumulate, reduce_max):
    cfg = AccelConfig(rows=3, cols=5)
    g = Golden(cfg, np.zeros(0x8000, np.uint8))
    g.act[:7] = rng.integers(-128, 128, (7, 3))
    g.wgt[4:7] = rng.integers(-128, 128, (3, 5))
    g.acc[:] = rng.integers(-1000, 1000, g.acc.shape)
    before = g.acc.copy()
    g._matmul(isa.make(Opcode.MATMUL, rows=6, act_addr=1, wgt_addr=4, acc_addr=10, accumulate=accumulate,
                       k_valid=3, n_valid=5, reduce_max=reduce_max))
    want = g.act[1:7] @ g.wgt[4:7]
    if accumulate:
        want = np.maximum(want, before[10:16]) if reduce_max else want + before[10:16]
    np.testing.assert_array_equal(g.acc[10:16], want)
    np.testing.assert_array_equal(g.acc[:10], before[:10])


def test_matmul_wraps_to_acc_bits():
    cfg = AccelConfig(rows=1, cols=1, acc_bits=16)
    g = Golden(cfg, np.zeros(0x8000, np.uint8))
    g.act[0, 0], g.wgt[0, 0], g.acc[0, 0] = 127, 127, 32767 - 100
    g._matmul(isa.make(Opcode.MATMUL, rows=1, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=1, k_valid=1,
                       n_valid=1))
    assert g.acc[0, 0] == numerics.wrap(np.int64(32767 - 100 + 127 * 127), 16)


def test_matmul_max_compares_the_wrapped_result():
    """The array's sum wraps at acc_bits before it meets ACC: max(-20832, 100) = 100, not wrap(44704)."""
    cfg = AccelConfig(rows=3, cols=1, acc_bits=16)
    g = Golden(cfg, np.zeros(0x8000, np.uint8))
    g.act[0], g.wgt[:3, 0], g.acc[0, 0] = 127, [127, 127, 98], 100
    g._matmul(isa.make(Opcode.MATMUL, rows=1, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=1, k_valid=3,
                       n_valid=1, reduce_max=1))
    assert numerics.wrap(np.int64(127 * (127 + 127 + 98)), 16) == -20832
    assert g.acc[0, 0] == 100


def test_post(rng):
    cfg = AccelConfig(rows=2, cols=4, act_bits=4)
    g = Golden(cfg, np.zeros(0x8000, np.uint8))
    g.acc[:5] = rng.integers(-50000, 50000, (5, 4))
    g.bias[2] = rng.integers(-1 << 42, 1 << 42, 4)
    g.mult[2] = rng.integers(1 << 29, 1 << 31, 4)
    g._post(isa.make(Opcode.POST, rows=5, acc_addr=0, out_addr=3, param_addr=2, shift=40, zero_point=-3,
                     clamp_lo=-3, clamp_hi=7))
    v = g.acc[:5] * g.mult[2] + g.bias[2]
    want = np.clip(np.floor(v / 2**40 + 0.5).astype(np.int64) - 3, -3, 7)
    np.testing.assert_array_equal(g.out[3:8], want)


@pytest.mark.parametrize("act_bits", [2, 4, 8])
def test_post_looks_up_the_activation_table(rng, act_bits):
    """A LOAD of TABLE fills each lane's table (lanes past row_len with zero); a POST with table=1 maps lane n of
    each result y to lane n of entry y mod 2**act_bits; table=0 leaves y alone."""
    cfg = AccelConfig(rows=2, cols=4, act_bits=act_bits)
    depth = cfg.table_depth
    mem = np.zeros(0x8000, np.uint8)
    mem[:depth * 3] = rng.integers(0, 256, depth * 3, dtype=np.uint8)
    post = dict(rows=6, acc_addr=0, param_addr=0, shift=0, zero_point=0, clamp_lo=cfg.act_min,
                clamp_hi=cfg.act_max)
    g = Golden(cfg, mem)
    g.acc[:6] = rng.integers(cfg.act_min, cfg.act_max + 1, (6, 4))
    g.mult[0] = 1
    g._load(load(Buffer.TABLE, rows=depth, row_len=3))
    g._post(isa.make(Opcode.POST, out_addr=0, table=1, **post))
    g._post(isa.make(Opcode.POST, out_addr=8, table=0, **post))
    table = np.zeros((depth, 4), np.int64)
    table[:, :3] = numerics.wrap(mem[:depth * 3].view(np.int8).reshape(depth, 3), act_bits)
    idx = g.acc[:6] % depth
    np.testing.assert_array_equal(g.out[:6], table[idx, np.arange(4)])
    np.testing.assert_array_equal(g.out[8:14], g.acc[:6])


def test_store_writes_only_its_bytes(rng):
    cfg = AccelConfig(rows=2, cols=4)
    mem = np.full(0x8000, 0xAA, np.uint8)
    blob = isa.encode_program([isa.make(Opcode.STORE, buf=Buffer.OUT, rows=3, row_len=3, buf_addr=1,
                                        ext_addr=1001, ext_stride=7, blocks=2, block_stride=40),
                               isa.make(Opcode.END)])
    mem[PROG:PROG + len(blob)] = np.frombuffer(blob, np.uint8)
    g = Golden(cfg, mem)
    g.out[:] = rng.integers(-128, 128, g.out.shape)
    before = mem.copy()
    g.run(PROG, 2)
    for b in range(2):
        for r in range(3):
            a = 1001 + 40 * b + 7 * r
            np.testing.assert_array_equal(mem[a:a + 3].view(np.int8), g.out[1 + 3 * b + r, :3])
            before[a:a + 3] = mem[a:a + 3]
    np.testing.assert_array_equal(mem, before)  # nothing else touched


def test_cycles_follow_the_timing_model():
    from emu.contract import timing
    cfg = AccelConfig(rows=4, cols=4)
    instrs = [load(Buffer.WGT, rows=4, row_len=4), isa.make(Opcode.SYNC),
              isa.make(Opcode.MATMUL, rows=10, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0, k_valid=4,
                       n_valid=4)]
    _, res = run(cfg, instrs)
    t = timing.Timer(cfg, timing.preload_cycles(PROG, 4, cfg))
    for i in instrs + [isa.make(Opcode.END)]:
        t.issue(i)
    assert res.cycles == t.now
    assert res.macs == 10 * 16


FAULTS = [
    ("opcode 0", [0], FaultCode.ILLEGAL_OPCODE),
    ("opcode 9", [9 | 1 << 100], FaultCode.ILLEGAL_OPCODE),
    ("load into OUT", [load(Buffer.OUT, rows=1, row_len=1)], FaultCode.ILLEGAL_FIELD),
    ("load into buffer 5", [load(5, rows=1, row_len=1)], FaultCode.ILLEGAL_FIELD),
    ("table row_len too long", [load(Buffer.TABLE, rows=1, row_len=9)], FaultCode.ILLEGAL_FIELD),
    ("table past end", [load(Buffer.TABLE, rows=2, row_len=1, buf_addr=255)], FaultCode.BUFFER_RANGE),
    ("store from ACT", [isa.make(Opcode.STORE, buf=Buffer.ACT, rows=1, row_len=1, buf_addr=0, ext_addr=0,
                                 ext_stride=1)], FaultCode.ILLEGAL_FIELD),
    ("row_len 0", [load(Buffer.ACT, rows=1, row_len=0, ext_stride=1)], FaultCode.ILLEGAL_FIELD),
    ("row_len too long", [load(Buffer.ACT, rows=1, row_len=9)], FaultCode.ILLEGAL_FIELD),
    ("matmul rows 0", [isa.make(Opcode.MATMUL, rows=0, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0,
                                k_valid=1, n_valid=1)], FaultCode.ILLEGAL_FIELD),
    ("act past end", [load(Buffer.ACT, rows=2, row_len=1, buf_addr=2047)], FaultCode.BUFFER_RANGE),
    ("wgt tile past end", [isa.make(Opcode.MATMUL, rows=1, act_addr=0, wgt_addr=510, acc_addr=0, accumulate=0,
                                    k_valid=1, n_valid=1)], FaultCode.BUFFER_RANGE),
    ("post param past end", [isa.make(Opcode.POST, rows=1, acc_addr=0, out_addr=0, param_addr=64, shift=0,
                                      zero_point=0, clamp_lo=0, clamp_hi=0)], FaultCode.BUFFER_RANGE),
    ("load past memory", [load(Buffer.ACT, rows=2, row_len=8, ext_addr=0x7FF8, ext_stride=8)], 
     FaultCode.BUS_ERROR),
]


@pytest.mark.parametrize("name, instrs, code", FAULTS, ids=[f[0] for f in FAULTS])
def test_faults(name, instrs, code):
    cfg = AccelConfig()
    prefix = [isa.make(Opcode.SYNC)]
    with pytest.raises(HardwareFault) as e:
        run(cfg, prefix + instrs)
    assert (e.value.code, e.value.pc) == (code, 1)


def test_program_without_end_faults_past_its_last_instruction():
    mem = np.zeros(0x8000, np.uint8)
    blob = isa.encode_program([isa.make(Opcode.SYNC)] * 3)
    mem[PROG:PROG + len(blob)] = np.frombuffer(blob, np.uint8)
    with pytest.raises(HardwareFault) as e:
        Golden(AccelConfig(), mem).run(PROG, 3)
    assert (e.value.code, e.value.pc) == (FaultCode.PROGRAM_RANGE, 3)


@pytest.mark.parametrize("length", [0, 4097])
def test_program_length_is_checked(length):
    with pytest.raises(HardwareFault) as e:
        Golden(AccelConfig(), np.zeros(0x100000, np.uint8)).run(0, length)
    assert e.value.code == FaultCode.PROGRAM_RANGE


def test_watchdog():
    instrs = [isa.make(Opcode.MATMUL, rows=1000, act_addr=0, wgt_addr=0, acc_addr=0, accumulate=0, k_valid=1,
                       n_valid=1), isa.make(Opcode.SYNC)]
    mem = np.zeros(0x8000, np.uint8)
    blob = isa.encode_program(instrs + [isa.make(Opcode.END)])
    mem[PROG:PROG + len(blob)] = np.frombuffer(blob, np.uint8)
    with pytest.raises(HardwareFault) as e:
        Golden(AccelConfig(), mem).run(PROG, 3, watchdog=500)
    assert (e.value.code, e.value.pc) == (FaultCode.WATCHDOG, 1)


@pytest.mark.parametrize("seed", range(6))
def test_a_program_cut_into_runs_after_syncs_writes_the_same_memory(seed):
    """The buffers carry over from run to run, so cutting after SYNCs changes only the cycles (each run's
    preload and END), never the memory or the MACs."""
    from randprog import random_case, split_case
    from rtlcheck import CFG_3X5
    mem, pa, pl, _ = random_case(CFG_3X5, 400 + seed)
    whole = mem.copy()
    res = Golden(CFG_3X5, whole).run(pa, pl)
    runs = split_case(mem, pa, pl, seed)
    parts = mem.copy()
    res_runs = Golden(CFG_3X5, parts).run_segments(runs)
    program_bytes = slice(0, max(pa + 16 * pl, runs[-1][0] + 16 * runs[-1][1]))
    whole[program_bytes] = parts[program_bytes] = 0
    assert np.array_equal(whole, parts)
    assert (res_runs.macs, res_runs.instructions) == (res.macs, res.instructions + len(runs) - 1)
