"""Where a program's cycles go, layer by layer, from the cycle model alone (emu.contract.timing).

The cycle count of a program does not depend on the data, so it is known at compile time: this walks the
program's segments through the same `Timer` golden counts with, and charges each cycle to the layer whose
instruction was issued last (a segment's preload to the layer it starts in). Layers end with a SYNC, so a
layer's work is done before the next one issues. The totals equal what golden and the RTL report.
"""
from __future__ import annotations

import dataclasses

from emu.contract.isa import Opcode
from emu.contract.loops import walk
from emu.contract.timing import Timer, instr_cycles, preload_cycles
from emu.compiler.program import Program

__all__ = ["LayerCycles", "cycle_profile"]


@dataclasses.dataclass
class LayerCycles:
    name: str
    kind: str
    macs: int            # MACs the array issues (k_valid * n_valid per activation row: the MAC counter's)
    instructions: int    # the layer's own, without the END of each run
    cycles: int
    dma_busy: int = 0    # cycles the DMA and the array are busy in them: the larger one is the bottleneck
    array_busy: int = 0
    host_macs: int = 0   # a host op's multiplies (torch runs it between segments; no accelerator cycles)
    network_macs: int = 0  # the layer's own MACs (ir._Layer.macs): fewer than issued for a grouped conv

    def utilization(self, array_macs: int) -> float:
        """The layer's own MACs over what the array could do in its cycles (zero blocks are not useful)."""
        return self.network_macs / max(1, self.cycles * array_macs)


def cycle_profile(program: Program) -> list[LayerCycles]:
    """One LayerCycles per layer of `program` (one run of its `batch` samples); cycles summed over layers
    are the run's cycles."""
    cfg = program.cfg
    layers = [LayerCycles(l["name"], l["kind"], l["macs"], l["instructions"], 0, host_macs=l.get("host_macs", 0),
                          network_macs=l.get("network_macs", l["macs"])) for l in program.layers]
    owner = []                              # layer of each instruction word; an END goes with the one before
    words = iter(i for i, l in enumerate(layers) for _ in range(l.instructions))
    for instr in program.instructions:
        if instr.op == Opcode.END:
            owner.append(owner[-1] if owner else 0)
        else:
            owner.append(next(words))
    instrs = program.instructions
    for (first, count), (addr, _) in zip(program.segments, program.starts()):
        timer = Timer(cfg, preload_cycles(addr, count, cfg))
        before = 0
        for step in walk(instrs[first:first + count]):     # loops run their bodies again
            instr = step.instr
            cycles = instr_cycles(instr, cfg)
            timer.issue(instr, cycles)
            layer = layers[owner[first + step.pc]]
            layer.cycles += timer.now - before
            if instr.op in (Opcode.LOAD, Opcode.STORE):
                layer.dma_busy += cycles
            elif instr.op == Opcode.MATMUL:
                layer.array_busy += cycles
            before = timer.now
    return layers


def profile_table(program: Program) -> str:
    """The per-layer table `systola compile` prints: MACs, instructions, cycles, array utilization and
    which unit bounds the layer (the DMA's busy cycles over the array's when the DMA is the busier, `host`
    for a host op: its MACs are torch's, between segments). With host ops, a last line gives the share of
    the MACs the accelerator runs."""
    cfg = program.cfg
    layers = cycle_profile(program)
    width = max(5, *(len(l.name) for l in layers))
    lines = [f"{'layer':<{width}}  {'kind':<22} {'MACs':>12} {'instrs':>8} {'cycles':>11} {'util':>6}  bound"]
    total = LayerCycles("total", f"{program.batch} sample(s)", sum(x.macs for x in layers),
                        sum(x.instructions for x in layers), sum(x.cycles for x in layers),
                        sum(x.dma_busy for x in layers), sum(x.array_busy for x in layers),
                        network_macs=sum(x.network_macs for x in layers))
    places = [d.get("placement", "accelerator") for d in program.layers] + ["accelerator"]
    for l, place in zip(layers + [total], places):
        if place == "host":
            lines.append(f"{l.name:<{width}}  {l.kind[:22]:<22} {l.host_macs:>12,} {0:>8,} {0:>11,} {'-':>6}  host")
            continue
        bound = (f"DMA x{l.dma_busy / max(1, l.array_busy):.1f}" if l.dma_busy > l.array_busy else "array")
        lines.append(f"{l.name:<{width}}  {l.kind[:22]:<22} {l.network_macs:>12,} {l.instructions:>8,} {l.cycles:>11,} "
                     f"{100 * l.utilization(cfg.macs):>5.1f}%  {bound}")
    hosts = [l for l, place in zip(layers, places) if place == "host"]
    if hosts:
        acc = sum(l.network_macs for l in layers)
        host = sum(l.host_macs for l in hosts)
        lines.append(f"{len(hosts)} host op{'s' * (len(hosts) != 1)} between {len(program.segments)} segments: "
                     f"{100 * acc / max(1, acc + host):.1f} % of the MACs run on the accelerator "
                     f"({host:,} MACs on the host); compile with --no-host to refuse host ops")
    return "\n".join(lines)
