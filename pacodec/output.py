"""Outputs that appear whole or not at all (DESIGN.md, "Errors and exit codes").

Everything is written to ``<output>.partial`` beside the target and renamed over it
only when complete; on any failure, Ctrl-C included, the partial output is removed
and an existing target is never touched.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

PARTIAL_SUFFIX = ".partial"


def partial_path(target: Path) -> Path:
    return target.with_name(target.name + PARTIAL_SUFFIX)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def check_target(target: Path, *, force: bool) -> None:
    """Raise OutputError if ``target`` exists (without force) or its folder is unwritable."""
    if target.exists() and not force:
        raise OutputError(f"{target}: already exists (use --force to replace it)")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write in folder {parent}")


def describe_os_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{target}: no space left on device")
    return OutputError(f"{target}: cannot write ({exc.strerror or exc})")


@contextmanager
def atomic_output(target: Path | str, *, force: bool = False) -> Iterator[Path]:
    """Yield the ``.partial`` path to write; rename it onto ``target`` on success."""
    target = Path(target)
    check_target(target, force=force)
    partial = partial_path(target)
    _remove(partial)
    try:
        yield partial
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(partial, target)
    except OSError as exc:
        _remove(partial)
        if isinstance(exc, OutputError):
            # Layers below write to the partial path; the user named the target.
            message = str(exc)
            if str(partial) in message:
                raise OutputError(message.replace(str(partial), str(target))) from exc
            raise
        raise describe_os_error(target, exc) from exc
    except BaseException:
        _remove(partial)
        raise
