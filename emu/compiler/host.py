"""Host ops: the float torch ops of a quantized model that run on the host, between accelerator segments.

A host op is the slice of the converted torch graph from dequantized IR tensors to one quantize node, as
torch's Q/DQ graph computes it: each input dequantized by torch's own `dequantize_per_tensor`, the ops run
by torch (ATen overloads, Python `operator` arithmetic on shapes), the result quantized by torch's own
`quantize_per_tensor`. So a host op's integers equal torch's on every element, whoever runs it (the
runtime between segments, the integer reference).

A `HostGraph` is plain data, so a program folder stores it without pickles: `ops` in JSON, each argument a
literal, a reference to an input or an earlier op (`{"ref": i}`), the batch size (`{"batch": true}`, for
shape arithmetic on a dynamic batch), a dtype/device/layout/memory format by name, or a constant tensor
(`{"const": name}`, kept in `consts`: an `.npz` beside the manifest).
"""
from __future__ import annotations

import dataclasses
import operator

import numpy as np

from emu.compiler.ir import QParams

__all__ = ["HostGraph", "HostInput", "encode_arg", "op_target", "ir_to_torch", "torch_to_ir"]

# torch is imported where a host op is built or run, so loading a program (or refusing bad input) does not
# pay for it
_ENUMS = ("dtype", "layout", "memory_format")


def ir_to_torch(x: np.ndarray, shape: tuple[int, ...]):
    """Integers [B, *shape] in IR layout (NHWC maps) -> torch layout (NCHW), as int8."""
    import torch
    x = np.asarray(x).reshape((len(x),) + tuple(shape))
    if len(shape) == 3:
        x = x.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.int8))


def torch_to_ir(v, shape: tuple[int, ...]) -> np.ndarray:
    """A torch integer tensor -> int64 [B, *shape] in IR layout; a map torch flattened (C, H, W order)
    before quantizing it is unflattened first."""
    import torch
    y = v.to(torch.int64).numpy()
    if len(shape) == 3 and y.ndim in (2, 3):      # flattened (C, H, W), or a 1-D map [B, C, L]
        h, w, c = shape
        y = y.reshape(len(y), c, h, w)
    if len(shape) == 3 and y.ndim == 4:
        y = y.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(y).reshape((len(y),) + tuple(shape))


def op_target(name: str):
    """The callable an op name stands for: 'aten.layer_norm.default' or 'operator.mul'."""
    import torch
    if name.startswith("operator."):
        return getattr(operator, name.split(".", 1)[1])
    ns, op, overload = name.split(".")
    return getattr(getattr(getattr(torch.ops, ns), op), overload)


def encode_arg(arg, encode_node):
    """JSON form of one op argument; fx nodes go through `encode_node` (which returns a JSON value or
    raises). Raises TypeError for an argument of another kind."""
    import torch
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    if isinstance(arg, (list, tuple)):
        return [encode_arg(a, encode_node) for a in arg]
    if isinstance(arg, torch.device):
        return {"device": str(arg)}
    for key in _ENUMS:
        if isinstance(arg, getattr(torch, key)):
            return {key: str(arg).removeprefix("torch.")}
    if isinstance(arg, torch.fx.Node):
        return encode_node(arg)
    raise TypeError(f"an argument of type {type(arg).__name__} ({arg!r})")


@dataclasses.dataclass(frozen=True)
class HostInput:
    """One input: an IR tensor (int64 [B, *ir shape]) and the shape torch gives it, batch first
    (-1 for the batch). An IR map [H, W, C] is torch's [B, C, H, W], or [B, C*H*W] when flattened."""
    tensor: str
    qparams: QParams
    torch_shape: tuple[int, ...]


@dataclasses.dataclass
class HostGraph:
    inputs: list[HostInput]
    ops: list[dict]                   # {"op": name, "args": [...], "kwargs": {...}}, in order
    out: dict                         # the JSON argument the output quantize takes
    out_qparams: QParams
    out_torch_shape: tuple[int, ...]  # batch first, -1 for the batch
    consts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    #: the batch torch.export fixed, when it did (the ops may then spell it out): runs go that many at a time
    static_batch: int | None = None

    def run(self, xs: list[np.ndarray], out_shape: tuple[int, ...]) -> np.ndarray:
        """Integer inputs (int64 [B, *ir shape] each) -> the integer output, int64 [B, *out_shape]."""
        B = len(xs[0])
        step = self.static_batch or B
        parts = [self._run([x[s:s + step] for x in xs], out_shape) for s in range(0, B, step)]
        return np.concatenate(parts) if parts else np.zeros((0,) + tuple(out_shape), np.int64)

    def _run(self, xs: list[np.ndarray], out_shape) -> np.ndarray:
        import torch
        import emu.frontend  # noqa: F401  (registers torch's quantized_decomposed ops, via torchao)
        B = len(xs[0])
        values = [_to_torch(x, i) for x, i in zip(xs, self.inputs)]

        def arg(a):
            if isinstance(a, list):
                return [arg(v) for v in a]
            if not isinstance(a, dict):
                return a
            if "ref" in a:
                return values[a["ref"]]
            if "batch" in a:
                return B
            if "const" in a:
                return torch.from_numpy(self.consts[a["const"]])
            if "device" in a:
                return torch.device(a["device"])
            key = next(iter(a))
            return getattr(torch, a[key])
        with torch.no_grad():
            for op in self.ops:
                values.append(op_target(op["op"])(*arg(op["args"]), **{k: arg(v) for k, v in op["kwargs"].items()}))
            q = self.out_qparams
            quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
            y = quantize(arg(self.out).float(), q.scale, q.zero_point, q.qmin, q.qmax, torch.int8)
        return torch_to_ir(y, tuple(out_shape))

    def elementwise_values(self, elementwise: frozenset[str]) -> np.ndarray | None:
        """torch's integer result for every integer of the one input, int64 [2**bits] (index q - qmin), when
        the graph is a function of each element alone: one input, every op in `elementwise` (ATen op names,
        any overload) with only that input, earlier ops and scalars as arguments; else None."""
        import torch
        if len(self.inputs) != 1 or self.consts or self.out.keys() != {"ref"}:
            return None

        def scalar_or_ref(a) -> bool:
            if isinstance(a, list):
                return all(scalar_or_ref(v) for v in a)
            return not isinstance(a, dict) or a.keys() == {"ref"}
        for op in self.ops:
            parts = op["op"].split(".")
            if len(parts) != 3 or parts[0] != "aten" or parts[1] not in elementwise or \
                    not scalar_or_ref(op["args"]) or not scalar_or_ref(list(op["kwargs"].values())):
                return None
        q = self.inputs[0].qparams
        x = np.arange(q.qmin, q.qmax + 1, dtype=np.int64)
        single = dataclasses.replace(self, inputs=[dataclasses.replace(self.inputs[0], torch_shape=(-1,))],
                                     static_batch=None)
        with torch.no_grad():
            return single._run([x[:, None]], (1,)).reshape(-1)

    def to_json(self) -> dict:
        return {"inputs": [{"tensor": i.tensor, "qparams": dataclasses.astuple(i.qparams),
                            "torch_shape": list(i.torch_shape)} for i in self.inputs],
                "ops": self.ops, "out": self.out, "out_qparams": dataclasses.astuple(self.out_qparams),
                "out_torch_shape": list(self.out_torch_shape), "consts": sorted(self.consts),
                "static_batch": self.static_batch}

    @classmethod
    def from_json(cls, d: dict, consts: dict[str, np.ndarray]) -> "HostGraph":
        inputs = [HostInput(i["tensor"], QParams(*i["qparams"]), tuple(i["torch_shape"])) for i in d["inputs"]]
        return cls(inputs, d["ops"], d["out"], QParams(*d["out_qparams"]), tuple(d["out_torch_shape"]),
                   {name: consts[name] for name in d["consts"]}, d.get("static_batch"))


def _to_torch(x: np.ndarray, inp: HostInput):
    """An IR tensor as torch sees it after its dequantize: float32, torch's layout."""
    import torch
    q = inp.qparams
    t = ir_to_torch(x, x.shape[1:]).reshape((len(x),) + tuple(inp.torch_shape[1:]))
    dequantize = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    return dequantize(t, q.scale, q.zero_point, q.qmin, q.qmax, torch.int8)
