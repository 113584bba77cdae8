"""Files and folders Systola writes: whole or not at all, with the user's umask, and only where it owns.

Every output is written to a temporary sibling first and renamed over the target, so a failure (a full
disk, an interrupt) leaves the target as it was and no temporary behind. A folder is replaced only when
it holds nothing but what Systola itself writes there (`owned`): a user's folder is never emptied.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterable

__all__ = ["OutputError", "write_file", "replace_dir", "check_file_target", "check_dir_target"]


class OutputError(ValueError):
    """An output path Systola refuses to write (a folder where a file is asked, a user's folder, no rights)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _os_reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _check_parent(full: str, path: str, what: str) -> str:
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {what} {path!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {path!r}: directory {parent!r} is not writable")
    return full


def check_file_target(path: str, what: str) -> str:
    """The absolute path of a file output, or OutputError if it cannot be one (a folder, no parent)."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise OutputError(f"{what} {path!r} is a directory; expected a file name")
    return _check_parent(full, path, what)


def write_file(path: str, write: Callable, *, what: str = "output", binary: bool = True) -> None:
    """Write `path` atomically: `write(f)` fills a temporary file in the same folder, which then replaces
    `path`. The file gets mode 0666 less the umask, like any tool's output."""
    full = check_file_target(path, what)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".systola-", dir=os.path.dirname(full))
    except OSError as e:
        raise OutputError(f"cannot write {what} {path!r}: {_os_reason(e)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.replace(tmp, full)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {what} {path!r}: {_os_reason(e)}") from None
        raise


def check_dir_target(path: str, what: str, owned: Callable[[Iterable[str]], bool]) -> str:
    """The absolute path of a folder output, or OutputError: it may not exist yet, be empty, or hold only
    entries `owned` accepts (a previous output of the same command); never the working folder itself."""
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise OutputError(f"{what} {path!r} is a file; expected a directory (created if missing)")
    cwd = os.path.abspath(os.getcwd())
    if os.path.isdir(full) and (cwd == full or cwd.startswith(full.rstrip(os.sep) + os.sep)):
        raise OutputError(f"{what} {path!r} is the working directory or holds it; name a new directory")
    if os.path.isdir(full):
        try:
            entries = os.listdir(full)
        except OSError as e:
            raise OutputError(f"cannot write {what} {path!r}: {_os_reason(e)}") from None
        if entries and not owned(entries):
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutputError(f"{what} {path!r} is a non-empty directory that systola did not write "
                              f"(it holds {shown}); name a new or empty directory")
    return _check_parent(full, path, what)


def replace_dir(path: str, fill: Callable[[str], None], *, what: str,
                owned: Callable[[Iterable[str]], bool]) -> None:
    """Write folder `path` atomically: `fill(tmp)` writes a temporary sibling folder, which then takes
    the place of `path` (an earlier output that `owned` accepts is removed only after that)."""
    full = check_dir_target(path, what, owned)
    parent = os.path.dirname(full)
    try:
        tmp = tempfile.mkdtemp(prefix=".systola-", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write {what} {path!r}: {_os_reason(e)}") from None
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        fill(tmp)
        if os.path.isdir(full):
            old = tempfile.mkdtemp(prefix=".systola-old-", dir=parent)
            os.replace(full, os.path.join(old, "previous"))
        os.replace(tmp, full)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(full) and os.path.isdir(os.path.join(old, "previous")):
            os.replace(os.path.join(old, "previous"), full)   # put the earlier output back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {what} {path!r}: {_os_reason(e)}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
