"""Front end: quantize torch models (PT2E) for Systola and lower them to the integer graph IR (`emu.compiler.ir`).

Importing this package imports torchao's PT2E flow once, quietly: torchao logs "Failed to load ..." for
its CUDA-only extensions and torch warns about enum registration; neither concerns a CPU user. The PT2E
entry points a user needs (`prepare_pt2e`, `prepare_qat_pt2e`, `convert_pt2e`) are re-exported here, so a
script that imports them from `emu.frontend` never imports torchao loudly itself.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

__all__ = ["UnsupportedModelError", "SystolaQuantizer", "CALIBRATIONS", "load_pt2", "lower", "prepare_pt2e",
           "prepare_qat_pt2e", "convert_pt2e"]


class UnsupportedModelError(ValueError):
    """A torch model holds an op or a quantization scheme the front end cannot lower.

    The message is one line naming the graph node, its op, and what is supported.
    """


def _import_torchao_quietly() -> None:
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import torchao.quantization.pt2e  # noqa: F401  (registers quantized_decomposed ops)
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    finally:
        logging.disable(previous)


_import_torchao_quietly()

from emu.frontend.observers import CALIBRATIONS  # noqa: E402
from emu.frontend.quantizer import SystolaQuantizer  # noqa: E402
from emu.frontend.lower import load_pt2, lower  # noqa: E402
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e  # noqa: E402
