"""A compiled program: instructions, the external-memory image and a JSON manifest.

On disk (an output directory): `manifest.json`, `memory.bin` (the whole initial external-memory image,
program included) and, when the model has host ops, `host.npz` (their constant tensors). Written to a
temporary directory first and renamed, so a failed compile leaves nothing half-written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from emu.contract.config import AccelConfig
from emu.compiler.host import HostGraph
from emu.compiler.ir import QParams, hwc
from emu.contract.isa import Instr, decode, decode_program, INSTR_BYTES
from emu.outputs import replace_dir

__all__ = ["TensorRegion", "HostStep", "Program", "ProgramError", "MANIFEST", "MEMORY", "HOST_CONSTS",
           "is_program_dir"]

MANIFEST = "manifest.json"
MEMORY = "memory.bin"
HOST_CONSTS = "host.npz"
FORMAT_VERSION = 4


class ProgramError(ValueError):
    """A program directory that cannot be used (missing, corrupt, another format version)."""


def is_program_dir(entries) -> bool:
    """True if a folder holding `entries` is one `Program.save` wrote (so it may be replaced)."""
    return set(entries) <= {MANIFEST, MEMORY, HOST_CONSTS}


@dataclasses.dataclass(frozen=True)
class TensorRegion:
    """An activation tensor in external memory: `batch` samples of `sample_bytes` bytes, sample n at
    addr + n * sample_bytes, each an NHWC map (a vector is a 1 x 1 x K map) with a border of `pad`
    (top, left, bottom, right) pixels holding `pad_value`, so convolution windows read it as padding.

    An input of a channel concatenation is a view into the concatenation's region: `pitch` is that
    region's channels, the bytes from one pixel to the next, and `addr` points at the view's first channel
    (its border is the concatenation's). A tensor of its own has pitch 0: its pixels are its channels."""
    name: str
    addr: int
    shape: tuple[int, ...]   # per sample, without batch (NHWC for feature maps)
    qparams: QParams
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    pitch: int = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def hwc(self) -> tuple[int, int, int]:
        """(H, W, C): a map's; a sequence's [N, D] is a 1 x N map, a vector a 1 x 1 x K map."""
        return hwc(self.shape)

    @property
    def padded_hwc(self) -> tuple[int, int, int]:
        """(H, W, bytes per pixel) in memory, the border included: the channels, or the pitch of a view."""
        h, w, c = self.hwc
        return h + self.pad[0] + self.pad[2], w + self.pad[1] + self.pad[3], self.pitch or c

    @property
    def sample_bytes(self) -> int:
        return math.prod(self.padded_hwc)

    def pack(self, x: np.ndarray) -> np.ndarray:
        """int64 [n, *shape] -> the bytes of n samples (uint8 [n * sample_bytes]), border included."""
        if self.pitch:
            raise ValueError(f"tensor {self.name} is a view into a concatenation: its bytes are not its own")
        n = len(x)
        (h, w, c), (pt, pl) = self.hwc, self.pad[:2]
        full = np.full((n,) + self.padded_hwc, self.pad_value, np.int64)
        full[:, pt:pt + h, pl:pl + w] = np.asarray(x, np.int64).reshape(n, h, w, c)
        return full.astype(np.int8).view(np.uint8).reshape(-1)

    def unpack(self, raw: np.ndarray, n: int) -> np.ndarray:
        """The first n samples of the bytes at `addr` (uint8, at least n * sample_bytes, less a view's
        channels after its own in the last pixel) -> int64 [n, *shape]."""
        (h, w, c), (pt, pl, _, _) = self.hwc, self.pad
        raw = raw[:n * self.sample_bytes]
        if len(raw) < n * self.sample_bytes:      # a view ending where the memory image does
            raw = np.concatenate([raw, np.zeros(n * self.sample_bytes - len(raw), np.uint8)])
        full = raw.view(np.int8).astype(np.int64).reshape((n,) + self.padded_hwc)
        return full[:, pt:pt + h, pl:pl + w, :c].reshape((n,) + tuple(self.shape))

    def to_json(self) -> dict:
        return {"name": self.name, "addr": self.addr, "shape": list(self.shape),
                "scale": self.qparams.scale, "zero_point": self.qparams.zero_point, "bits": self.qparams.bits,
                "pad": list(self.pad), "pad_value": self.pad_value, "pitch": self.pitch}

    @classmethod
    def from_json(cls, d: dict) -> "TensorRegion":
        return cls(d["name"], int(d["addr"]), tuple(d["shape"]),
                   QParams(float(d["scale"]), int(d["zero_point"]), int(d["bits"])),
                   tuple(d.get("pad", (0, 0, 0, 0))), int(d.get("pad_value", 0)), int(d.get("pitch", 0)))


@dataclasses.dataclass
class HostStep:
    """A host op (emu.compiler.host) run after the program's first `after` segments: it reads its input
    regions of external memory and writes its output region, border included."""
    after: int
    name: str
    graph: HostGraph
    inputs: list[TensorRegion]
    output: TensorRegion

    def run(self, mem: np.ndarray, batch: int) -> None:
        xs = [r.unpack(mem[r.addr:], batch) for r in self.inputs]
        out = self.output
        mem[out.addr:out.addr + batch * out.sample_bytes] = out.pack(self.graph.run(xs, out.shape))

    def to_json(self, index: int) -> tuple[dict, dict[str, np.ndarray]]:
        graph = self.graph.to_json()
        graph["consts"] = [f"{index}.{c}" for c in graph["consts"]]
        return ({"after": self.after, "name": self.name, "graph": graph,
                 "inputs": [r.to_json() for r in self.inputs], "output": self.output.to_json()},
                {f"{index}.{k}": v for k, v in self.graph.consts.items()})

    @classmethod
    def from_json(cls, d: dict, consts) -> "HostStep":
        graph = HostGraph.from_json(d["graph"], consts)
        graph.consts = {k.split(".", 1)[1]: v for k, v in graph.consts.items()}
        return cls(int(d["after"]), d["name"], graph, [TensorRegion.from_json(r) for r in d["inputs"]],
                   TensorRegion.from_json(d["output"]))


@dataclasses.dataclass
class Program:
    cfg: AccelConfig
    image: np.ndarray            # uint8 external-memory image, program at prog_addr
    prog_addr: int
    prog_len: int
    batch: int                   # samples one run of the program processes
    input: TensorRegion
    output: TensorRegion
    layers: list[dict]           # per layer: name, kind, output TensorRegion json, source, ideal macs
    input_layout: str = "nc"
    #: (first pc, instructions) of each segment, in order: a program longer than instr_depth is several
    #: segments, each ending with END and each one start of the hardware, started one after the other on the
    #: same external memory (see emu.compiler.codegen.split_segments). None: one segment of all prog_len.
    segments: list[tuple[int, int]] | None = None
    #: host ops, in order, each after the segments it follows (HostStep.after, non-decreasing)
    host: list[HostStep] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.segments is None:
            self.segments = [(0, self.prog_len)]
        self.segments = [(int(a), int(n)) for a, n in self.segments]
        pc = 0
        for first, count in self.segments:
            if first != pc or count < 1:
                raise ProgramError(f"segments {self.segments} do not cover the program's {self.prog_len} "
                                   f"instructions in order")
            pc += count
        if pc != self.prog_len:
            raise ProgramError(f"segments {self.segments} cover {pc} of the program's {self.prog_len} instructions")

    def starts(self) -> list[tuple[int, int]]:
        """(PROG_ADDR, PROG_LEN) of each segment: what a backend starts, in order."""
        return [(self.prog_addr + first * INSTR_BYTES, count) for first, count in self.segments]

    @property
    def instructions(self) -> list[Instr]:
        words = decode_program(self.image[self.prog_addr:self.prog_addr + self.prog_len * INSTR_BYTES])
        return [decode(w) for w in words]

    @property
    def network_macs(self) -> int:
        """MACs of one run as the network defines its layers (emu.compiler.ir._Layer.macs, `batch` samples):
        what utilization counts. The MAC counter counts what the array issues, more for a grouped conv."""
        return sum(l.get("network_macs", l["macs"]) for l in self.layers)

    def layer_regions(self) -> list[TensorRegion]:
        return [TensorRegion.from_json(l["output"]) for l in self.layers]

    def manifest(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "prog_addr": self.prog_addr,
            "prog_len": self.prog_len,
            "segments": [list(seg) for seg in self.segments],
            "memory_bytes": int(self.image.size),
            "batch": self.batch,
            "input_layout": self.input_layout,
            "input": self.input.to_json(),
            "output": self.output.to_json(),
            "layers": self.layers,
            "host": [step.to_json(k)[0] for k, step in enumerate(self.host)],
        }

    def save(self, out_dir: str) -> None:
        """Write the program folder `out_dir` whole, replacing an earlier program there; a folder that
        holds anything else is refused (emu.outputs.OutputError)."""
        def fill(tmp: str) -> None:
            with open(os.path.join(tmp, MANIFEST), "w") as f:
                json.dump(self.manifest(), f, indent=1)
            self.image.tofile(os.path.join(tmp, MEMORY))
            if self.host:
                consts = {k: v for i, step in enumerate(self.host) for k, v in step.to_json(i)[1].items()}
                np.savez(os.path.join(tmp, HOST_CONSTS), **consts)
        replace_dir(out_dir, fill, what="program directory", owned=is_program_dir)

    @classmethod
    def load(cls, out_dir: str) -> "Program":
        path = os.path.join(out_dir, MANIFEST)
        if not os.path.isfile(path):
            raise ProgramError(f"{out_dir!r} is not a compiled program directory (no {MANIFEST}); "
                               f"create one with `systola compile MODEL.pt2 -o {out_dir}`")
        try:
            with open(path) as f:
                m = json.load(f)
            if not isinstance(m, dict):
                raise ProgramError(f"{path}: holds a JSON {type(m).__name__}, not a program manifest")
            if m.get("format") != FORMAT_VERSION:
                raise ProgramError(f"{path}: format {m.get('format')!r}, this systola reads {FORMAT_VERSION}")
            for key, least in (("prog_addr", 0), ("prog_len", 1), ("memory_bytes", 1), ("batch", 1)):
                v = m[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < least:
                    raise ProgramError(f"{path}: {key!r} is {v!r}; expected an integer >= {least}")
            image = np.fromfile(os.path.join(out_dir, MEMORY), dtype=np.uint8)
            if image.size != m["memory_bytes"]:
                raise ProgramError(f"{out_dir}/{MEMORY} has {image.size} bytes, the manifest says "
                                   f"{m['memory_bytes']}")
            if m["prog_addr"] + m["prog_len"] * INSTR_BYTES > image.size:
                raise ProgramError(f"{out_dir}: corrupt program directory (its {m['prog_len']} instructions at "
                                   f"{m['prog_addr']:#x} run past the {image.size}-byte memory image)")
            program = cls(AccelConfig.from_dict(m["config"]), image, m["prog_addr"], m["prog_len"], m["batch"],
                          TensorRegion.from_json(m["input"]), TensorRegion.from_json(m["output"]), m["layers"],
                          m.get("input_layout", "nc"), [tuple(seg) for seg in m["segments"]])
            if m["host"]:
                with np.load(os.path.join(out_dir, HOST_CONSTS), allow_pickle=False) as consts:
                    program.host = [HostStep.from_json(d, consts) for d in m["host"]]
        except (KeyError, TypeError, ValueError, json.JSONDecodeError, OSError) as e:
            if isinstance(e, ProgramError) and str(e).startswith((path, str(out_dir))):
                raise
            raise ProgramError(f"{out_dir}: corrupt program directory ({type(e).__name__}: {e})") from None
        return program
