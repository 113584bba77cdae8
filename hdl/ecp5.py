"""(placeholder until the ecp5 branch lands)"""
BLOCK_RAM_LATENCY = 2
MULT_LATENCY = 3


def is_ecp5(platform) -> bool:
    return getattr(platform, "family", None) == "ecp5"
