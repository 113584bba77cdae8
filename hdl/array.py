"""The weight-stationary systolic array: `rows` x `cols` processing elements (PEs).

Dataflow (R = rows = reduction lanes K, C = cols = output lanes N)::

      a[t][0] ──> PE[0][0] ──> PE[0][1] ──> ... PE[0][C-1]        activations move right, one PE a cycle
      a[t][1] ─┐     │psum         │                               (row k enters k cycles late: skew)
        (1 reg)└> PE[1][0] ──> PE[1][1] ──> ...                    partial sums move down, one PE a cycle
         ...         │             │
                     v             v   (column n delayed C-1-n cycles: deskew)
                  y[t][0]       y[t][1] ...                        y[t][n] = sum_k a[t][k] * w[k][n]

Each PE holds one weight w[k][n], loaded a row at a time through `w_load`/`w_row`/`w_data`. A row presented
in cycle c is written into column n in cycle c + 1 + n, behind the activations (which reach column n n
cycles after column 0), so it serves exactly the vectors presented on `a_in` from cycle c + 1 - k on, in
every column, and the vectors before them still meet the row it replaces: the next tile's weights may enter
while the last vectors of the one before are in the array, and consecutive folds overlap.

Each PE multiplies a*w (act_bits x weight_bits, signed; a 1-bit weight is binary, -1 or +1)
in MULT_LATENCY = 4 cycles (operands registered, product registered three times: on ECP5 one MULT18X18D with
its input, pipeline and output registers, hdl/fpga/ecp5.py, then a fabric register; elsewhere, and for
products of 4 bits or less, the same four registers around a `*`), and registers the partial sum psum_in +
product (signed). The fabric register takes the route out of the DSP block off the partial sum's carry chain,
so that no stage holds both the route and the chain. A column's sum of R products never needs more than
act_bits + weight_bits + ceil(log2 R) bits, so the partial sums are that wide (or acc_bits, wrapping, if that
is narrower) and sign-extended to acc_bits on `y_out`: equal results with shorter carry chains and fewer
flip-flops (8x8 W8A8: 19 bits instead of 32). No stage holds more than the multiplier or one partial-sum carry
chain.

`a_in` is registered once before the skew, so the buffer's read data (a block RAM output, slow on FPGAs)
does not feed a multiplier directly.

Timing: the vector presented on `a_in` with `a_valid` at cycle c comes out on `y_out` with `y_valid` at
cycle c + LATENCY, LATENCY = R + C + MULT_LATENCY (input register 1, skew R-1, product MULT_LATENCY, psum
chain R, deskew C-1, minus the R overlap of skew, chain and input register). Vectors may be presented back
to back, one per cycle. A fold of T vectors, presented from the cycle after its first weight row, leaves
the array R + C + T - 1 cycles after that row plus the pipeline registers: the R + C + T - 1 of
emu.contract.timing, whose MATMUL_LATENCY counts the registers around the array (see hdl/compute.py).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from emu.contract.config import mac_multiplier

from hdl.fpga import family_of
from hdl.pipeline import delay

__all__ = ["SystolicArray", "MULT_LATENCY"]

MULT_LATENCY = 4   # a family's hard multiplier (Family.multiplier_latency = 3 registers), then one in the fabric


class SystolicArray(wiring.Component):
    def __init__(self, *, rows: int, cols: int, act_bits: int, weight_bits: int, acc_bits: int):
        self.rows, self.cols = rows, cols
        self._act_bits, self._weight_bits, self._acc_bits = act_bits, weight_bits, acc_bits
        super().__init__({
            "w_load": In(1), "w_row": In(max(1, (rows - 1).bit_length())),
            "w_data": In(data.ArrayLayout(signed(weight_bits), cols)),
            "a_valid": In(1), "a_in": In(data.ArrayLayout(signed(act_bits), rows)),
            "y_valid": Out(1), "y_out": Out(data.ArrayLayout(signed(acc_bits), cols)),
        })

    @property
    def latency(self) -> int:
        return self.rows + self.cols + MULT_LATENCY

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        # Column n writes a weight row 1 + n cycles after it is presented: the data, the row number and the
        # load flag travel along the columns a register a column (the activations' own pace), and each PE
        # row's load enable is decoded and registered per column, so no decode sits in front of the weight
        # registers' clock enables and each enable drives one column's weights
        weight = [[Signal(signed(self._weight_bits), name=f"w_{k}_{n}") for n in range(C)] for k in range(R)]
        w_load, w_row = self.w_load, self.w_row
        for n in range(C):
            w_data = delay(m, self.w_data[n], 1 + n, f"w_data_{n}")
            for k in range(R):
                load = Signal(name=f"w_load_{k}_{n}")
                m.d.sync += load.eq(w_load & (w_row == k))
                with m.If(load):
                    m.d.sync += weight[k][n].eq(w_data)
            w_load, w_row = delay(m, w_load, 1, f"w_load_c{n}"), delay(m, w_row, 1, f"w_row_c{n}")

        # input skew: row k sees the vector k cycles after row 0
        a_reg = Signal(data.ArrayLayout(signed(self._act_bits), R), name="a_reg")
        m.d.sync += a_reg.eq(self.a_in)
        row_in = []
        for k in range(R):
            sig = a_reg[k]
            for d in range(k):
                reg = Signal(signed(self._act_bits), name=f"skew_{k}_{d}")
                m.d.sync += reg.eq(sig)
                sig = reg
            row_in.append(sig)

        psum_bits = min(self._acc_bits, self._act_bits + self._weight_bits + (R - 1).bit_length())
        family = family_of(platform)
        hard = family.has_multiplier and mac_multiplier(self._act_bits, self._weight_bits) == "dsp"
        if hard and family.multiplier_latency != MULT_LATENCY - 1:
            raise ValueError(f"{family!r}'s multiplier takes {family.multiplier_latency} cycles; the array's "
                             f"product register stages expect {MULT_LATENCY - 1}")
        psum_above = [None] * C
        for k in range(R):
            a = row_in[k]
            for n in range(C):
                if hard:
                    prod = delay(m, family.multiplier(m, a, weight[k][n], name=f"mult_{k}_{n}"), 1,
                                 f"prod_{k}_{n}")
                else:
                    a_r, w_r = Signal.like(a, name=f"a_r_{k}_{n}"), Signal.like(weight[k][n], name=f"w_r_{k}_{n}")
                    prod = Signal(signed(self._act_bits + self._weight_bits), name=f"prod_{k}_{n}")
                    # a binary weight's bit is its sign: a * -1 where set, a * +1 where not (a negate or a
                    # copy; act_bits + 1 bits hold -act_min)
                    w_value = Mux(w_r[0], -1, 1) if self._weight_bits == 1 else w_r
                    m.d.sync += [a_r.eq(a), w_r.eq(weight[k][n]), prod.eq(a_r * w_value)]
                    prod = delay(m, prod, MULT_LATENCY - 2, f"prod_{k}_{n}")
                psum = Signal(signed(psum_bits), name=f"psum_{k}_{n}")
                a_next = Signal(signed(self._act_bits), name=f"a_{k}_{n}")
                m.d.sync += a_next.eq(a)
                m.d.sync += psum.eq(prod if psum_above[n] is None else psum_above[n] + prod)
                psum_above[n] = psum
                a = a_next

        # output deskew: column n leaves the chain n cycles after column 0
        for n in range(C):
            sig = psum_above[n]
            for d in range(C - 1 - n):
                reg = Signal(signed(psum_bits), name=f"deskew_{n}_{d}")
                m.d.sync += reg.eq(sig)
                sig = reg
            m.d.comb += self.y_out[n].eq(sig)

        m.d.comb += self.y_valid.eq(delay(m, self.a_valid, self.latency, "valid"))
        return m
