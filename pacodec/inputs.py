"""Opening the files pacodec reads whole (``.pcz`` files, weights) without ever blocking.

``open()`` on a FIFO waits for a writer that may never come, and a device can answer
forever (``/dev/zero``) or act on being opened, so everything that is not a regular
file is refused before it is read: by ``stat`` before opening, then by ``fstat`` on
the descriptor, opened with ``O_NONBLOCK``, so a name swapped in between is caught
too. Input *videos* go through FFmpeg and are checked in video.py.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import InputError, PacodecError
from .output import _kind_of


def _refuse_special(path: Path, mode: int, error: type[PacodecError], what: str) -> None:
    if stat.S_ISDIR(mode):
        raise error(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(mode):
        raise error(f"{path}: is {_kind_of(mode)}, not {what}")


def open_regular(path: str | os.PathLike[str], *, error: type[PacodecError] = InputError,
                 what: str = "a file") -> BinaryIO:
    """``path`` opened for binary reading if it is a regular file (links followed);
    else ``error`` with one line: no such file, a folder, a FIFO, a device, a socket,
    unreadable. Never blocks on opening."""
    path = Path(path)
    try:
        _refuse_special(path, os.stat(path).st_mode, error, what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    try:
        _refuse_special(path, os.fstat(fd).st_mode, error, what)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


__all__ = ["open_regular"]
