"""Accuracy of a quantized model over a held-out split, on the accelerator (golden or RTL), with the
integer reference's and torch's Q/DQ accuracy beside it, and the hardware's cycles and utilization.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from emu.compiler.codegen import compile_graph
from emu.contract.config import AccelConfig
from emu.emulator.reference import run_reference
from emu.runtime.run import InputError, quantize_input, run_program, user_shape

__all__ = ["DATASETS", "EvalResult", "load_dataset", "evaluate"]

DATASETS = ("digits", "mnist")


def load_dataset(name: str, graph) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 in the model's input layout, labels) of the held-out split of dataset `name`
    (`emu.zoo.datasets`)."""
    from emu.zoo import datasets
    split = datasets.load(datasets.check_dataset(name))
    want = user_shape(graph.tensors[graph.input].shape, graph.input_layout)
    try:
        return datasets.as_shape(split.x_test, want, name), split.y_test
    except ValueError as e:
        raise InputError(str(e)) from None


@dataclasses.dataclass
class EvalResult:
    samples: int
    accuracy: float            # the backend's predictions
    reference_equal: bool      # the backend's every layer equals the integer reference's
    torch_accuracy: float      # torch's converted Q/DQ model, float arithmetic
    cycles_per_inference: float   # per sample of a full run: independent of how many samples were given
    utilization: float
    instructions: int
    batch: int


def evaluate(ep, graph, cfg: AccelConfig, x: np.ndarray, y: np.ndarray, *, backend: Callable,
             batch: int | None = None, progress: Callable | None = None) -> EvalResult:
    from emu.frontend.torchref import torch_forward
    program = compile_graph(graph, cfg, batch=batch)
    xq = quantize_input(program, x)
    out = run_program(program, xq, backend=backend, progress=progress)
    ref = run_reference(graph, xq)
    equal = all(np.array_equal(out.layers[n.output], ref[n.output]) for n in graph.nodes)
    predicted = out.output.reshape(len(x), -1).argmax(1)
    torch_pred = np.asarray(torch_forward(ep, x)).reshape(len(x), -1).argmax(1)
    return EvalResult(len(x), float(np.mean(predicted == y)), equal, float(np.mean(torch_pred == y)),
                      out.cycles_per_slot, out.utilization(cfg), program.prog_len, program.batch)
