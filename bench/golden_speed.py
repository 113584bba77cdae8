"""Golden emulator speed against torch, measured side by side in one run (this machine is noisy: compare
the ratios, not the milliseconds).

For each network and batch, one row: the golden emulator's time on its fast path (the plan already built,
as on every chunk after the first), the one-time plan (the first run's extra seconds), torch float32 eager
on the same architecture and batch, torch's own converted Q/DQ graph, the integer reference
(emu/emulator/reference.py), and golden executing instruction by instruction (--exact-steps) where that
takes under a minute. Ratios are speed relative to golden (torch time / golden time: >= 0.5 means golden
takes at most twice torch's time). Every row checks golden == integer reference on every element.

Threads: torch, numpy's BLAS and OpenMP all get --threads (default 1), set before numpy loads.

    python bench/golden_speed.py                       # all rows (about 5 minutes, ResNet-18's plan most)
    python bench/golden_speed.py --nets digits-mlp,resnet20 --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys

NETS = ("digits-mlp", "digits-cnn", "resnet20", "resnet18")
#: (samples of the large-batch row, samples per program run) by network
LARGE = {"digits-mlp": (450, 450), "digits-cnn": (450, 450), "resnet20": (64, 16), "resnet18": (8, 1)}


def _args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", default=",".join(NETS), help=f"comma-separated, from {', '.join(NETS)}")
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and numpy alike (default 1)")
    ap.add_argument("--repeats", type=int, default=5, help="best of this many timed runs (default 5)")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--cols", type=int, default=8)
    args = ap.parse_args()
    bad = [n for n in args.nets.split(",") if n not in NETS]
    if bad:
        ap.error(f"--nets {bad[0]!r} is not accepted: expected names from {', '.join(NETS)}")
    return args


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:      # before numpy loads: its BLAS reads these once
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from emu.compiler.codegen import compile_graph  # noqa: E402
from emu.contract.config import AccelConfig  # noqa: E402
from emu.emulator import dataflow  # noqa: E402
from emu.emulator.reference import run_reference  # noqa: E402
from emu.frontend import load_pt2, lower  # noqa: E402
from emu.runtime.run import get_backend, quantize_input, run_program, user_shape  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _network(name: str):
    """(Q/DQ exported program, float model, float inputs of the large batch)."""
    rng = np.random.default_rng(0)
    if name.startswith("digits-"):
        from emu.zoo import digits
        model = name.split("-")[1]
        x = digits.load_split(model)[2]
        return load_pt2(digits.checkpoint("w8a8", model)), digits.float_model(model).eval(), x
    from emu.zoo.vision import quantized, random_model
    ep, x = quantized(name)
    samples = LARGE[name][0]
    return ep, random_model(name)[0], rng.random((samples, *x.shape[1:])).astype(np.float32)


def main() -> None:
    args = ARGS
    torch.set_num_threads(args.threads)
    cfg = AccelConfig(rows=args.rows, cols=args.cols)
    print(f"{cfg.describe()}; {args.threads} thread(s); best of {args.repeats}; ratios are torch time / golden time")
    head = (f"{'network':<11} {'batch':>5} {'prog':>4} {'plan s':>7} {'golden ms':>10} {'torch ms':>9} {'ratio':>6} "
            f"{'Q/DQ ms':>8} {'ratio':>6} {'ref ms':>8} {'ratio':>6} {'steps ms':>9} {'x fast':>6} {'img/s':>7} exact")
    print(head)
    steps_backend = get_backend("golden", exact_steps=True)
    for name in args.nets.split(","):
        ep, model, x_all = _network(name)
        graph = lower(ep)
        qdq = ep.module()
        for samples, per_run in ((1, 1), LARGE[name]):
            x = x_all[:samples]
            program = compile_graph(graph, cfg, batch=per_run)
            xq = quantize_input(program, x)
            xt = torch.from_numpy(x.reshape(len(x), *user_shape(program.input.shape, program.input_layout)))
            dataflow._cached_plan.cache_clear()
            t = time.perf_counter()
            out = run_program(program, xq)
            first = time.perf_counter() - t
            exact = np.array_equal(out.output, run_reference(graph, xq)[graph.output])
            with torch.no_grad():
                # interleaved in one run so all see the same machine load
                t_gold = best_of(lambda: run_program(program, xq), args.repeats)
                t_torch = best_of(lambda: model(xt), args.repeats)
                t_qdq = best_of(lambda: qdq(xt), args.repeats)
                t_ref = best_of(lambda: run_reference(graph, xq), args.repeats)
            plan = first - t_gold
            steps = "-"
            if first < 5 and samples == 1:     # step by step is 20-100x the fast path: only where quick
                t_steps = best_of(lambda: run_program(program, xq, backend=steps_backend), 1)
                steps = f"{1e3 * t_steps:9.1f} {t_steps / t_gold:6.0f}"
            else:
                steps = f"{'-':>9} {'-':>6}"
            print(f"{name:<11} {samples:5d} {per_run:4d} {plan:7.2f} {1e3 * t_gold:10.2f} {1e3 * t_torch:9.2f} "
                  f"{t_torch / t_gold:6.3f} {1e3 * t_qdq:8.2f} {t_qdq / t_gold:6.3f} {1e3 * t_ref:8.2f} "
                  f"{t_ref / t_gold:6.3f} {steps} {samples / t_gold:7.1f} {'yes' if exact else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
