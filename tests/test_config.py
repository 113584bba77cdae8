import pytest

from emu.contract.config import AccelConfig, ConfigError


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 0}, "rows=0 is not accepted: expected an integer from 1 to 64"),
    ({"cols": 65}, "cols=65 is not accepted: expected an integer from 1 to 64"),
    ({"act_bits": 0}, "act_bits=0 is not accepted: expected an integer from 1 to 8"),
    ({"weight_bits": 9}, "weight_bits=9 is not accepted: expected an integer from 1 to 8"),
    ({"acc_bits": 40}, "acc_bits=40 is not accepted: expected an integer from 16 to 32"),
    ({"rows": 2.5}, "rows=2.5 is not accepted"),
    ({"rows": True}, "rows=True is not accepted"),
    ({"bus_bits": 48}, "bus_bits=48 is not accepted: expected one of 32, 64, 128"),
    ({"act_depth": 0}, "act_depth=0 is not accepted"),
    ({"rows": 16, "wgt_depth": 8}, "wgt_depth=8 is not accepted: it must hold at least one tile"),
])
def test_bad_values_are_refused_with_the_value_and_range(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        AccelConfig(**kwargs)


def test_derived_ranges():
    c = AccelConfig(rows=3, cols=5, act_bits=4, weight_bits=2, bus_bits=32)
    assert (c.act_min, c.act_max, c.weight_min, c.weight_max) == (-8, 7, -2, 1)
    assert c.macs == 15 and c.bus_bytes == 4


def test_dict_round_trip_and_unknown_keys():
    c = AccelConfig(rows=3, cols=5)
    assert AccelConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown configuration key 'depth'"):
        AccelConfig.from_dict({"depth": 3})
