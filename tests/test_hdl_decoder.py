"""hdl.decoder.Decoder, the instruction decoder, in Amaranth's simulator against golden check_fields."""
import numpy as np
from amaranth.sim import Simulator

from emu.contract import isa
from emu.contract.config import AccelConfig
from emu.contract.faults import FaultCode
from emu.emulator.golden import check_fields
from emu.contract.isa import Buffer, Opcode

from hdl.decoder import Decoder


def _words(cfg):
    """Instructions around every decode check, plus illegal opcodes."""
    rng = np.random.default_rng(3)
    out = [0, 7, 15]
    for _ in range(300):
        op = Opcode(int(rng.integers(1, 7)))
        vals = {}
        for f in isa.FIELDS[op]:
            top = 1 << f.width
            choice = rng.integers(0, 4)
            v = [0, 1, int(rng.integers(0, min(top, 80))), int(rng.integers(0, top))][choice]
            if f.signed and v >= top // 2:
                v -= top
            vals[f.name] = v
        out.append(isa.encode(isa.make(op, **vals)))
    # rows * blocks around each buffer's end, blocks = 0, and a product past 16 bits
    for op, buf, depth in ((Opcode.LOAD, Buffer.ACT, cfg.act_depth), (Opcode.LOAD, Buffer.PARAM, cfg.param_depth),
                           (Opcode.STORE, Buffer.OUT, cfg.out_depth)):
        for buf_addr, rows, blocks in ((depth - 12, 4, 3), (depth - 11, 4, 3), (1, 2, 0), (0, 1 << 15, 1023),
                                       (0, 1, depth), (1, 1, depth)):
            out.append(isa.encode(isa.make(op, buf=buf, rows=rows, row_len=1, buf_addr=max(buf_addr, 0),
                                           ext_addr=0, ext_stride=1, blocks=blocks, block_stride=0)))
    return out


def test_decoder_faults_match_check_fields():
    """Faults in check_fields' order (PROGRAM_RANGE first), a LOAD/STORE's row bytes and a MATMUL's count
    (k_valid * n_valid; a LOAD/STORE's count only feeds the range check), LATENCY cycles later."""
    from emu.contract.timing import element_bytes
    cfg = AccelConfig(rows=3, cols=5, act_depth=64, wgt_depth=32, acc_depth=64, out_depth=64, param_depth=8,
                      instr_depth=128)
    dut = Decoder(cfg)
    words = _words(cfg)

    def want(word):
        instr = isa.decode(word)
        return FaultCode.ILLEGAL_OPCODE if instr is None else (check_fields(instr, cfg) or (0,))[0]

    async def tb(ctx):
        # one word a cycle, every other one marked past the program's end; results LATENCY cycles later
        seen = []
        for cycle in range(len(words) + Decoder.LATENCY):
            if cycle < len(words):
                ctx.set(dut.word, words[cycle])
                ctx.set(dut.past_end, cycle % 2)
            ctx.set(dut.valid, cycle < len(words))
            await ctx.tick()
            if ctx.get(dut.out_valid):
                seen.append((ctx.get(dut.out_word), ctx.get(dut.fault), ctx.get(dut.count), ctx.get(dut.row_bytes)))
        assert [s[0] for s in seen] == words
        for i, (word, fault, count, row_bytes) in enumerate(seen):
            assert fault == (FaultCode.PROGRAM_RANGE if i % 2 else want(word)), (hex(word), want(word))
            instr = isa.decode(word)
            if fault == 0 and instr.op in (Opcode.LOAD, Opcode.STORE):
                assert row_bytes == instr.row_len * element_bytes(Buffer(instr.buf))
            elif fault == 0 and instr.op == Opcode.MATMUL:
                assert count == instr.k_valid * instr.n_valid

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
