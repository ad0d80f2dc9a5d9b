"""A pre-imported launcher for the CLI tests: each ``pacodec`` run is still its own
process, forked from one that has already imported torch, NumPy, PyAV and pacodec.

About 130 tests run the CLI; a fresh interpreter spends 2–3 s of CPU importing torch
alone, which was half of ``make test``. The launcher imports once and forks a child
per run: the child gets its own argv, working folder, stdin (empty), stdout and
stderr (files) and the launcher's environment, calls ``pacodec.cli.main`` and exits with its status, so a
test still sees a separate process's exit status, output and files. It runs no torch
operation before forking (its thread pools do not exist yet, so the children's are
their own). Runs that set environment variables go through a fresh interpreter
(``conftest.run_cli``): a module may read one when it is imported.

Protocol (this file run as a script): one JSON request a line on stdin
``{"args", "cwd", "out", "err", "timeout"}``; one JSON reply a line on stdout
``{"status"}``: the exit status, −N for a child killed by signal N, or null when it
ran past ``timeout`` (then it is killed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def _child(request: dict) -> None:
    """In the forked child: become the run, then exit without returning."""
    status = 1
    try:
        os.setpgid(0, 0)
        if request["cwd"]:
            os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request["out"]), (2, request["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = ["pacodec", *request["args"]]
        import pacodec.cli

        try:
            pacodec.cli.main(list(request["args"]))
            status = 0
        except SystemExit as exc:  # what the interpreter does with it
            code = exc.code
            if code is None:
                status = 0
            elif isinstance(code, int):
                status = code & 0xFF
            else:
                print(code, file=sys.stderr)
                status = 1
        except BaseException:  # an uncaught error: the interpreter's traceback and 1
            import traceback

            traceback.print_exc()
            status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(status)


def serve() -> None:
    import av  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import pacodec.api  # noqa: F401
    import pacodec.cli  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        deadline = time.monotonic() + request["timeout"]
        status = None
        while True:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(code)
                break
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    serve()
