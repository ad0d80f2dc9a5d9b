"""Many files at once: one ``.pcz`` per input, on every core or on a cluster.

``encode_many(inputs, out_dir)`` encodes each input into ``out_dir/<input's stem>.pcz``
with ``api.encode`` (so each output is written through ``output.atomic_output``,
exactly as a single encode writes it, and holds the same bytes). A file that fails
is reported in its :class:`EncodeResult` and the others are finished; nothing here
prints or exits.

Where the work runs:
- by default a pool of processes on this machine, one per core (at most one per
  input), each with its share of torch's threads;
- or any ``concurrent.futures.Executor`` passed as ``executor``, for example a Dask
  cluster's (``distributed.Client(...).get_executor()``): each input is one task that
  a worker runs with pacodec installed, reading the input and writing the output by
  the same paths, so both must be on storage every worker sees.

Frames are reported to ``progress`` as they are encoded by the local pool, and a
whole file's frames when it finishes on another executor.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue as queues
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, OutputError, PacodecError

Progress = Callable[[int], None]


@dataclass(frozen=True)
class EncodeResult:
    """What became of one input: ``info`` (``api.probe`` of the output) on success,
    else ``error`` (one line) and ``exit_code`` (what the CLI would exit with for this
    file alone: 2 bad input, 3 output problem, 1 a bug)."""

    input: str
    output: str
    info: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    error: str | None = None
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def output_paths(inputs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``out_dir/<stem>.pcz`` for each input (a folder of frames: its name).

    Raises InputError when there are no inputs or two map to the same output (the same
    input twice, ``a.mp4`` and ``a.mkv``, or ``x/a.mp4`` and ``y/a.mp4``): one would
    replace the other.
    """
    if not inputs:
        raise InputError("no inputs to encode")
    folder = Path(out_dir)
    seen: dict[Path, str] = {}
    outputs = []
    for name in inputs:
        path = Path(name)
        stem = path.name if path.is_dir() else path.stem
        if stem in ("", ".", ".."):
            stem = Path(os.path.abspath(path)).name or "frames"
        target = folder / f"{stem}.pcz"
        if target in seen:
            raise InputError(f"{seen[target]} and {name} would both be written to {target}; "
                             "rename one, or encode them into different folders")
        seen[target] = os.fspath(name)
        outputs.append(target)
    return outputs


def prepare_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Make sure ``out_dir`` is a folder (created, with its parents, if missing)."""
    folder = Path(out_dir)
    if folder.suffix.lower() == ".pcz" and not folder.exists():
        raise InputError(f"{folder}: with several inputs, -o names a folder for their .pcz files")
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"{folder}: is not a folder; with several inputs, -o names a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({exc.strerror or exc})") from None
    return folder


# -- one file, in whichever process runs it ----------------------------------------------
_progress_queue: Any = None  # set in pool workers: frames encoded go to the parent's bar
_busy = False  # a pool worker is inside encode_one (SIGTERM then removes its partial output)


def encode_one(src: str, dst: str, options: dict[str, Any]) -> EncodeResult:
    """Encode one input with ``api.encode(src, dst, **options)``; never raises for a
    failed file (KeyboardInterrupt aside): the failure is in the result."""
    global _busy
    from . import api

    sink = _progress_queue
    report = (lambda n: sink.put(n)) if sink is not None else None
    _busy = True
    try:
        info = api.encode(src, dst, progress=report, **options)
        return EncodeResult(os.fspath(src), os.fspath(dst), info=info)
    except PacodecError as exc:
        message = str(exc)
        if os.fspath(src) not in message and os.fspath(dst) not in message:
            message = f"{src}: {message}"
        return EncodeResult(os.fspath(src), os.fspath(dst), error=message, exit_code=exc.exit_code)
    except Exception as exc:  # a bug: reported like the CLI reports one, the others go on
        return EncodeResult(os.fspath(src), os.fspath(dst), exit_code=1,
                            error=f"{src}: internal error: {type(exc).__name__}: {exc}")
    finally:
        _busy = False


def _on_sigterm(signum: int, frame: Any) -> None:
    if _busy:
        raise KeyboardInterrupt  # atomic_output removes this file's partial output
    os._exit(128 + signum)


def _start_worker(progress_queue: Any, threads: int) -> None:
    """Pool worker set-up: report frames to the parent, use a share of the cores, and
    leave Ctrl-C to the parent (which stops the workers with SIGTERM, see encode_many)."""
    global _progress_queue
    _progress_queue = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    import torch

    torch.set_num_threads(threads)


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- many files ------------------------------------------------------------------------
def encode_many(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    executor: cf.Executor | None = None,
    progress: Progress | None = None,
    done: Callable[[EncodeResult], None] | None = None,
    **options: Any,
) -> list[EncodeResult]:
    """Encode each input into ``out_dir/<stem>.pcz``; returns one result per input, in
    input order.

    ``options`` are ``api.encode``'s (model, quantizer, max_frames, gop, lam, force,
    weights_dir, device). ``jobs``: processes of the local pool (default: one per core,
    at most one per input); ``executor``: run the encodes there instead. ``done`` is
    called with each result as its file finishes. Raises InputError/OutputError only
    for what stops every file (no inputs, two inputs with one output name, an ``out_dir``
    that cannot be a folder); a failed file is a result with ``error`` set.
    """
    outputs = output_paths(inputs, out_dir)
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    prepare_folder(out_dir)
    tasks = [(os.fspath(src), os.fspath(dst)) for src, dst in zip(inputs, outputs)]
    if executor is not None:
        # Another machine's worker has another working folder: give it whole paths.
        tasks = [(os.path.abspath(src), os.path.abspath(dst)) for src, dst in tasks]
        return _run(executor, tasks, options, progress, done, None)
    workers = min(jobs or cores(), len(tasks))
    # spawn, not fork: torch and PyAV hold threads that a forked child must not inherit.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    pool = cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                  initargs=(progress_queue, max(1, cores() // workers)))
    try:
        return _run(pool, tasks, options, progress, done, progress_queue)
    except BaseException:
        # Ctrl-C or SIGTERM here: stop the workers the way that removes their partial
        # outputs (their SIGTERM handler), and start nothing new.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except OSError:
                pass
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        progress_queue.close()


def _run(executor: cf.Executor, tasks: list[tuple[str, str]], options: dict[str, Any],
         progress: Progress | None, done: Callable[[EncodeResult], None] | None,
         progress_queue: Any) -> list[EncodeResult]:
    futures = {executor.submit(encode_one, src, dst, options): i for i, (src, dst) in enumerate(tasks)}
    results: list[EncodeResult | None] = [None] * len(tasks)
    pending = set(futures)

    def drain() -> None:
        while progress_queue is not None:
            try:
                n = progress_queue.get_nowait()
            except queues.Empty:
                return
            if progress:
                progress(n)

    while pending:
        finished, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
        drain()
        for future in finished:
            i = futures[future]
            src, dst = tasks[i]
            try:
                result = future.result()
            except cf.process.BrokenProcessPool as exc:
                result = EncodeResult(src, dst, exit_code=1, error=f"{src}: internal error: the "
                                      f"process encoding it died ({exc})")
            except Exception as exc:  # raised by the executor itself (a lost cluster worker, ...)
                result = EncodeResult(src, dst, exit_code=1,
                                      error=f"{src}: internal error: {type(exc).__name__}: {exc}")
            if progress_queue is None and progress and result.info:
                progress(result.info["frames"])
            results[i] = result
            if done:
                done(result)
    drain()
    return [r for r in results if r is not None]
