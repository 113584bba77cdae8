import pytest
from hypothesis import given, strategies as st

from emu.contract import isa
from emu.contract.isa import FIELDS, INSTR_BITS, Opcode


def _field_values(op):
    def value(f):
        if f.signed:
            return st.integers(-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1)
        return st.integers(0, (1 << f.width) - 1)
    return st.fixed_dictionaries({f.name: value(f) for f in FIELDS[op]})


@given(st.sampled_from(list(Opcode)).flatmap(lambda op: st.tuples(st.just(op), _field_values(op))))
def test_encode_decode_round_trip(op_fields):
    op, fields = op_fields
    instr = isa.make(op, **fields)
    word = isa.encode(instr)
    assert 0 <= word < 1 << INSTR_BITS
    assert isa.decode(word) == instr


@pytest.mark.parametrize("op", list(Opcode))
def test_fields_fit_the_word(op):
    layout = isa.field_layout(op)
    end = max((lsb + f.width for f, lsb in layout), default=isa.OPCODE_BITS)
    assert end <= INSTR_BITS


@pytest.mark.parametrize("word", [0, 8, 15])
def test_unassigned_opcodes_decode_to_none(word):
    assert isa.decode(word) is None


def test_make_checks_widths_and_names():
    with pytest.raises(ValueError, match=r"POST.zero_point=200 does not fit 8 bits \(signed, -128..127\)"):
        isa.make(Opcode.POST, rows=1, acc_addr=0, out_addr=0, param_addr=0, shift=0, zero_point=200,
                 clamp_lo=0, clamp_hi=0)
    with pytest.raises(ValueError, match="missing fields"):
        isa.make(Opcode.MATMUL, rows=1)


def test_program_round_trip():
    prog = [isa.make(Opcode.SYNC), isa.make(Opcode.END)]
    words = isa.decode_program(isa.encode_program(prog))
    assert [isa.decode(w) for w in words] == prog
