"""The work of one sweep point, as plain functions of plain data, so a process pool or a Ray worker on
another machine runs them alike: nothing here reads or writes the sweep's folder.

`train_float_task` trains the float network once per sweep; `precision_task` fine-tunes it at one width
(or takes the cached `.pt2`), then, for every array, compiles it, scores the test split on golden (every
layer checked against the integer reference) and torch's Q/DQ graph, optionally a sample on the RTL, and
reads cycles and utilization; `synth_task` synthesizes one accelerator configuration.
"""
from __future__ import annotations

import io
import os
import tempfile
import time

__all__ = ["train_float_task", "qat_model", "precision_task", "synth_task", "dataset_inputs"]


def _worker_setup():
    import emu.frontend  # noqa: F401  (imports torchao quietly, before anything imports it loudly)
    import torch
    torch.set_num_threads(1)   # seeded training repeats bit for bit only on one thread


def dataset_inputs(model, dataset: str):
    """(x_train, y_train, x_test, y_test) of `dataset` shaped as `model` takes one sample."""
    from emu.zoo import datasets
    split = datasets.load(dataset)
    return (datasets.as_shape(split.x_train, model.input_shape, dataset), split.y_train,
            datasets.as_shape(split.x_test, model.input_shape, dataset), split.y_test)


def train_float_task(model, dataset: str) -> dict:
    """{"state": the float state_dict as torch.save bytes, "accuracy": test accuracy, "seconds"}."""
    import torch
    from emu.sweep.models import build_net
    from emu.zoo import train
    _worker_setup()
    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = dataset_inputs(model, dataset)
    net = train.train_float(build_net(model), x_train, y_train, epochs=model.epochs, lr=model.lr,
                            augment=model.augment)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return {"state": buf.getvalue(), "accuracy": train.accuracy(net, x_test, y_test),
            "seconds": time.perf_counter() - t0}


def qat_model(model, dataset: str, float_state: bytes, bits: dict, recipe: dict) -> bytes:
    """The `.pt2` bytes of the float network (its state_dict bytes) fine-tuned at `bits` with `recipe`."""
    import torch
    from emu.sweep.models import build_net
    from emu.zoo import train
    x_train, y_train, _, _ = dataset_inputs(model, dataset)
    net = build_net(model)()
    net.load_state_dict(torch.load(io.BytesIO(float_state), weights_only=True))
    net.eval()
    kwargs = dict(recipe, layer_bits={k: tuple(v) for k, v in recipe.get("layer_bits", {}).items()} or None)
    converted = train.qat(net, bits["act_bits"], bits["weight_bits"], x_train, y_train, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt2")
        train.export_pt2(converted, path, dynamic_batch=True, input_shape=model.input_shape)
        with open(path, "rb") as f:
            return f.read()


def _load_pt2(blob: bytes):
    from emu.frontend.lower import load_pt2, lower
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pt2")
        with open(path, "wb") as f:
            f.write(blob)
        ep = load_pt2(path)
    return ep, lower(ep)


def hardware_bits(graph) -> tuple[int, int]:
    """(weight_bits, act_bits) of the narrowest accelerator that runs `graph`: its widest weights and
    activations (the logits may be wider than the rest; pooling and adds multiply by 2-bit unit weights, so
    binary weights with those run on weight_bits=2)."""
    return (max(n.weight_bits for n in graph.nodes), max(t.qparams.bits for t in graph.tensors.values()))


def precision_task(model, dataset: str, float_state: bytes, bits: dict, arrays: list[tuple[int, int]], *,
                   pt2: bytes | None, recipe: dict, rtl_samples: int) -> dict:
    """{"pt2": the QAT model's bytes (fine-tuned with `recipe`, `emu.zoo.train.qat`'s keyword arguments,
    unless given), "qat_seconds", "points": one dict per array}. A point that fails carries its "error" and
    the others still run."""
    from emu.contract.config import AccelConfig
    from emu.runtime.evaluate import evaluate
    from emu.runtime.run import get_backend
    _worker_setup()
    t0 = time.perf_counter()
    if pt2 is None:
        pt2 = qat_model(model, dataset, float_state, bits, recipe)
    qat_seconds = time.perf_counter() - t0
    ep, graph = _load_pt2(pt2)
    _, _, x_test, y_test = dataset_inputs(model, dataset)
    hw_w, hw_a = hardware_bits(graph)
    points = []
    for rows, cols in arrays:
        point = {"rows": rows, "cols": cols, "hw_weight_bits": hw_w, "hw_act_bits": hw_a}
        t1 = time.perf_counter()
        try:
            cfg = AccelConfig(rows=rows, cols=cols, weight_bits=hw_w, act_bits=hw_a)
            gold = evaluate(ep, graph, cfg, x_test, y_test, backend=get_backend("golden"))
            point.update(samples=gold.samples, golden_accuracy=gold.accuracy,
                         golden_equals_reference=gold.reference_equal, torch_accuracy=gold.torch_accuracy,
                         cycles_per_image=gold.cycles_per_inference, utilization=gold.utilization,
                         instructions=gold.instructions)
            if rtl_samples:
                n = min(rtl_samples, len(x_test))
                rtl = evaluate(ep, graph, cfg, x_test[:n], y_test[:n], backend=get_backend("rtl"))
                small = evaluate(ep, graph, cfg, x_test[:n], y_test[:n], backend=get_backend("golden"))
                point.update(rtl_samples=n, rtl_accuracy=rtl.accuracy, rtl_golden_accuracy=small.accuracy,
                             rtl_equals_golden=bool(rtl.reference_equal and small.reference_equal
                                                    and rtl.cycles_per_inference == small.cycles_per_inference))
        except Exception as e:   # a point that fails is recorded and the sweep goes on
            point["error"] = f"{type(e).__name__}: {e}"
        point["eval_seconds"] = time.perf_counter() - t1
        points.append(point)
    return {"pt2": pt2, "qat_seconds": qat_seconds, "points": points}


def synth_task(cfg_dict: dict, device: str, seed: int) -> dict:
    """The synthesis report (`hdl.fpga.flow.synthesize`) of one configuration, built in a temporary folder."""
    from emu.contract.config import AccelConfig
    from hdl.fpga import flow
    cfg = AccelConfig(**cfg_dict)
    target = flow.parse_target(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        return flow.synthesize(cfg, target, os.path.join(tmp, "synth"), freq_mhz=150.0, seed=seed, quiet=True)
