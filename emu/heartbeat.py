"""A line every few seconds while a long step runs (a simulator build, place and route, a lock wait), so a
user never looks at a silent terminal for minutes."""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
import time
from typing import Callable, IO

__all__ = ["heartbeat", "last_line", "locked"]


@contextlib.contextmanager
def heartbeat(what: str, *, every: float = 15.0, detail: Callable[[], str] | None = None,
              stream: IO[str] | None = None):
    """Print `what: N s elapsed[; detail()]` to stderr every `every` seconds while the block runs."""
    stop = threading.Event()
    t0 = time.monotonic()

    def beat():
        while not stop.wait(every):
            extra = detail() if detail else ""
            print(f"  {what}: {time.monotonic() - t0:.0f} s elapsed" + (f"; {extra}" if extra else ""),
                  file=stream or sys.stderr, flush=True)
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def last_line(path: str, width: int = 100) -> Callable[[], str]:
    """A `detail` for `heartbeat`: the last non-empty line of a growing log file, cut to `width`."""
    def read() -> str:
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4096))
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1][:width] if lines else ""
    return read


@contextlib.contextmanager
def locked(path: str, waiting_for: str):
    """Hold an exclusive lock on `path`; if another process holds it, say so and beat while waiting."""
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"systola: waiting for {waiting_for} (another process holds {path})", file=sys.stderr,
                  flush=True)
            with heartbeat(f"waiting for {waiting_for}"):
                fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
