"""A warm ``handgrad`` for tests/test_docs.py: one process imports experiments (torch,
pandas, seaborn: seconds) once, then forks a child per command.

The docs show some forty ``handgrad`` commands; run as fresh processes on 2 busy cores,
their imports alone take minutes. Here a shim named ``handgrad`` (first on the test's
PATH) hands its argv, working folder, environment and its stdin/stdout/stderr (the file
descriptors themselves, over a Unix socket) to this server, which forks; the child takes
them over and calls ``experiments.cli.main(argv)`` — what the console script runs — and
exits with its status, which the shim exits with. The console script's own start is
tested by tests/test_cli.py's subprocess tests.

Forking is safe here because the parent only imports: torch starts no thread pool until it
computes, and each child is a fresh copy that computes alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

SHIM = """#!{python} -S
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({path!r})
msg = json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}})
socket.send_fds(s, [msg.encode()], [0, 1, 2])
s.shutdown(socket.SHUT_WR)
sys.exit(int(s.makefile().read() or 1))
"""


def write_shim(folder: Path, path: str) -> Path:
    """An executable ``handgrad`` in ``folder`` that asks the server at ``path``."""
    shim = folder / "handgrad"
    shim.write_text(SHIM.format(python=sys.executable, path=path), encoding="utf-8")
    shim.chmod(0o755)
    return shim


def _child(conn: socket.socket, fds: list[int], request: dict) -> int:
    from experiments.cli import main
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    conn.close()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["handgrad", *request["argv"]]
    try:
        code = main(request["argv"])
    except SystemExit as end:            # argparse's --help and its errors
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    return code or 0


def serve(path: str) -> None:
    """Import everything a command may need, say ``ready``, then serve until killed."""
    import matplotlib
    matplotlib.use("Agg")
    from experiments.cli import build_parser
    build_parser()                       # imports every feature module (torch, seaborn ...)
    import experiments.output.plots
    import experiments.teaching.explain.diagram  # noqa: F401  (run figures, --figure)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)
    print("ready", flush=True)
    parent = os.getppid()
    server.settimeout(2)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            if os.getppid() != parent:     # the test is gone (killed): so is its server
                return
            continue
        conn.settimeout(None)
        msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while chunk := conn.recv(1 << 16):     # a long environment: several pieces
            msg += chunk
        request = json.loads(msg)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)        # the command and whatever it starts: one process group
            server.close()
            code = 1
            try:
                code = _child(conn, fds, request)
            except BaseException:             # a traceback, as python prints it
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code & 0xFF)
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        # os._exit skips atexit, where joblib's loky would stop its idle worker processes
        # (sweep, grade): they would hold the output pipe open for minutes. End them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        conn.sendall(str(os.waitstatus_to_exitcode(status) & 0xFF).encode())
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
