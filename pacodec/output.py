"""Outputs that appear whole or not at all, and never at the cost of anything else
(DESIGN.md, "Errors and exit codes").

Each output is written to a partial path of its own beside the target,
``<output>.<random>.partial``, created exclusively (``O_EXCL`` for a file, ``mkdir`` for
a folder of PNG frames), so two writers never share one, and a ``.partial`` that this
process did not create is never touched. It is renamed onto the target only when
complete; on any failure, Ctrl-C included, it is removed and an existing target is
left as it was.

What ``force`` may replace, as ``mv -f`` and FFmpeg's ``-y`` would: an existing regular
file (or a symbolic link, which is replaced, not followed), an empty folder, or a
folder of PNG frames that pacodec writes (nothing in it but ``frame_NNNNNN.png``
files). Never: any other folder, a device, FIFO or socket, ``.``, ``..``, ``/``, the
current folder or one above it, an input of the same command or a folder holding one.

Without ``force`` the target is checked when the output starts and again when it is
published: the rename refuses to replace a target that appeared meanwhile
(``renameat2(RENAME_NOREPLACE)`` on Linux, else a hard link for files, else a check
just before the rename, which leaves a window of microseconds).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

PARTIAL_SUFFIX = ".partial"
_PARTIAL_NAME = re.compile(r"\.[0-9a-f]{8}\.partial$")
_FRAME_NAME = re.compile(r"frame_\d{6}\.png")


def target_name(name: str) -> str:
    """The target's file name for a partial name (``x.mp4.1a2b3c4d.partial`` -> ``x.mp4``)."""
    return _PARTIAL_NAME.sub("", name)


def _unique_partial(target: Path) -> Path:
    return target.with_name(f"{target.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")


# -- what a target is ---------------------------------------------------------------
def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def is_frame_folder(folder: Path) -> bool:
    """True for a folder holding nothing but ``frame_NNNNNN.png`` regular files (or nothing)."""
    try:
        with os.scandir(folder) as entries:
            return all(e.is_file(follow_symlinks=False) and _FRAME_NAME.fullmatch(e.name)
                       for e in entries)
    except OSError:
        return False


def _where(path: Path) -> Path:
    """The path as a directory entry: its folder resolved, the last name kept as it is
    (a symbolic link named as the output is the entry replaced, not what it points to)."""
    path = Path(os.path.abspath(path))
    return path.parent.resolve() / path.name


def _refuse_protected(target: Path, inputs: Iterable[Path | str]) -> None:
    """Refuse outputs that would replace the command's inputs, the working folder,
    ``/`` or a folder above any of them, whatever ``force`` says."""
    if target.name in ("", ".", ".."):
        raise OutputError(f"{target}: not a file name; name the output file or folder")
    where = _where(target)
    cwd = Path.cwd().resolve()
    if where == Path(where.anchor) or where == cwd or where in cwd.parents:
        raise OutputError(f"{target}: refusing to write over a folder that holds the current folder")
    for name in inputs:
        source = Path(os.path.abspath(name))
        for candidate in {source, source.resolve()}:
            if where == candidate:
                raise OutputError(f"{target}: is the input {name}; choose another output")
            if where in candidate.parents:
                raise OutputError(f"{target}: holds the input {name}; choose another output")


def _check_replaceable(target: Path) -> None:
    """Raise OutputError unless ``force`` may replace what is at ``target`` now."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise describe_os_error(target, exc) from exc
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        if is_frame_folder(target):
            return
        raise OutputError(
            f"{target}: is a folder that holds other files than pacodec's frame_*.png; "
            "--force replaces only files and frame folders pacodec wrote"
        )
    raise OutputError(f"{target}: is {_kind_of(st.st_mode)}; pacodec never replaces it")


def check_target(target: Path, *, force: bool, inputs: Iterable[Path | str] = ()) -> None:
    """Raise OutputError if writing ``target`` is not allowed or cannot work."""
    _refuse_protected(target, inputs)
    if os.path.lexists(target):
        if not force:
            raise OutputError(f"{target}: already exists (use --force to replace it)")
        _check_replaceable(target)
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write in folder {parent}")


def describe_os_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"{target}: no space left on device")
    return OutputError(f"{target}: cannot write ({exc.strerror or exc})")


# -- creating and removing what this process wrote ------------------------------------
def _create_partial(target: Path, folder: bool) -> Path:
    for _ in range(16):
        partial = _unique_partial(target)
        try:
            if folder:
                os.mkdir(partial)
            else:
                os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return partial
        except FileExistsError:
            continue
        except OSError as exc:
            raise describe_os_error(target, exc) from exc
    raise OutputError(f"{target}: cannot find a free name for the partial output")


def _remove_written(path: Path) -> None:
    """Remove a file, or a frame folder entry by entry (never a whole tree); missing is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            with os.scandir(path) as entries:
                for entry in entries:
                    if _FRAME_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
            os.rmdir(path)
        else:
            path.unlink()
    except OSError:
        pass


# -- publishing ------------------------------------------------------------------------
def _renameat2() -> object | None:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        function = ctypes.CDLL(libc_name, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_noreplace(source: Path, target: Path) -> None:
    """Rename, failing with FileExistsError if ``target`` exists (atomically where possible)."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),  # type: ignore[operator]
                      _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: a file system without the flag
            raise OSError(code, os.strerror(code), str(target))
    if not source.is_dir():
        os.link(source, target)  # fails with EEXIST if the target appeared
        os.unlink(source)
        return
    if os.path.lexists(target):  # the documented fallback: a check just before the rename
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def _publish(partial: Path, target: Path, *, force: bool) -> None:
    if not force:
        try:
            _rename_noreplace(partial, target)
        except FileExistsError:
            raise OutputError(
                f"{target}: appeared while writing; left as it is (use --force to replace it)"
            ) from None
        return
    _check_replaceable(target)  # it may have changed since the start
    if not partial.is_dir() and not (os.path.lexists(target) and os.path.isdir(target)
                                     and not os.path.islink(target)):
        os.replace(partial, target)  # a file over a file or link: atomic
        return
    # A folder is involved: move the old one aside, the new one in, then remove the old
    # frames one by one (it was checked to hold nothing else).
    old = None
    if os.path.lexists(target):
        old = _unique_partial(target)
        os.rename(target, old)
    try:
        _rename_noreplace(partial, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        _remove_written(old)


@contextmanager
def atomic_output(target: Path | str, *, force: bool = False, folder: bool = False,
                  inputs: Iterable[Path | str] = ()) -> Iterator[Path]:
    """Yield a fresh partial path to write (an empty file, or an empty folder when
    ``folder``); publish it as ``target`` on success, remove it on any failure."""
    target = Path(target)
    check_target(target, force=force, inputs=inputs)
    partial = _create_partial(target, folder)
    try:
        yield partial
        _publish(partial, target, force=force)
    except OSError as exc:
        _remove_written(partial)
        if isinstance(exc, OutputError):
            # Layers below write to the partial path; the user named the target.
            message = str(exc)
            if str(partial) in message:
                raise OutputError(message.replace(str(partial), str(target))) from exc
            raise
        raise describe_os_error(target, exc) from exc
    except BaseException:
        _remove_written(partial)
        raise
