"""AXI4 and AXI4-Lite signatures (master view) and helpers to expose them as flat top-level ports.

Member names follow the AXI specification (``awaddr``, ``wstrb`` ...) so that, prefixed with ``m_axi_`` or
``s_axil_``, the generated Verilog ports match cocotbext-axi's ``from_prefix`` conventions.
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["axi4_signature", "axil_signature", "flat_members", "connect_flat", "RESP_OKAY", "BURST_INCR"]

RESP_OKAY = 0
BURST_INCR = 1


def axi4_signature(*, addr_bits: int, data_bits: int, id_bits: int) -> wiring.Signature:
    """AXI4 master: INCR bursts only, no lock/cache/prot/qos (the slave sees the AXI defaults)."""
    return wiring.Signature({
        "awid": Out(id_bits), "awaddr": Out(addr_bits), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1), "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "arid": Out(id_bits), "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


def axil_signature(*, addr_bits: int, data_bits: int = 32) -> wiring.Signature:
    """AXI4-Lite master view; a slave uses ``.flip()``."""
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def flat_members(prefix: str, signature: wiring.Signature) -> dict:
    """``{prefix + name: member}``: one top-level port per bus signal, named as cocotbext-axi expects."""
    return {prefix + name: member for name, member in signature.members.items()}


def connect_flat(m: Module, owner, prefix: str, iface, signature: wiring.Signature) -> None:
    """Wire the flat ports ``owner.<prefix><name>`` to interface object ``iface`` of ``signature``.

    ``signature`` is the flow as seen from ``owner``'s port (Out: the port is driven from ``iface``)."""
    for name, member in signature.members.items():
        port, inner = getattr(owner, prefix + name), getattr(iface, name)
        if member.flow == wiring.Out:
            m.d.comb += port.eq(inner)
        else:
            m.d.comb += inner.eq(port)
