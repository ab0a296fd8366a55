"""The per-container monitor: conmon, as Podman and CRI-O use it.

conmon (a small C program, Debian package conmon) runs `<runtime> create`,
then stays as the container's parent: it holds stdio (pipes or the pty),
writes the log file, serves the attach socket, records the exit code in
<runroot>/exits/<id>, notes an OOM kill in its persist dir, and finally runs
the exit command `ketch container cleanup <id>` which applies the restart
policy and --rm. It double-forks and setsid()s, so it outlives the CLI.
Measured at ~1 MiB PSS per idle container (BENCHMARKS.md, "Run").

The log file is conmon's k8s-file format (`<RFC3339Nano> <stream> <F|P> <text>`
per line), not Docker's json-file lines; `ketch logs` renders it exactly as
`docker logs` renders json-file (streams, -t, --since/--until, --tail, -f).
Why not json-file on disk: conmon 2.1.6 writes only k8s-file, journald or
passthrough, and converting would need either a second process per container
copying the stream (a Python one costs ~4.6 MiB PSS, against conmon's 0.35:
the memory goal) or a rewrite after exit (wrong while the container runs,
which is when log shippers read it). So tools that parse Docker's
`*-json.log` files directly do not understand LogPath here; `ketch logs`
and inspect's LogConfig are the interface.
`--log-opt max-size` maps to conmon's --log-size-max (it truncates; there is
no max-file rotation).

A foreground `ketch run` cleans up itself (it is already loaded and
waiting); it holds an flock on <dir>/attached so that conmon's exit
command, which tests that lock first, stands aside.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from ketch import paths
from ketch.engine import ocicli
from ketch.errors import ExecError, FailedPrecondition, KetchError

# The exit command: skip when a foreground CLI holds the lock (it cleans up itself).
_EXIT_SCRIPT = 'flock -n "$1" true 2>/dev/null && exec "$2" container cleanup "$3"'


def state_dir(cid: str) -> Path:
    return paths.runroot() / "containers" / cid


def exit_file(cid: str) -> Path:
    return paths.runroot() / "exits" / cid


def socket_dir() -> Path:
    return paths.runroot() / "s"


def read_exit_code(cid: str) -> int | None:
    try:
        return int(exit_file(cid).read_text().strip())
    except (OSError, ValueError):
        return None


def oom_noted(cid: str) -> bool:
    return (state_dir(cid) / "persist" / "oom").exists()


def ketch_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ketch")
    return beside if os.access(beside, os.X_OK) else (shutil.which("ketch") or "ketch")


def conmon_binary() -> str:
    found = os.environ.get("KETCH_CONMON") or shutil.which("conmon")
    if not found:
        raise FailedPrecondition("conmon is not installed (Debian package conmon); it is "
                                 "the per-container monitor")
    return found


def launch(cid: str, name: str, bundle: str, runtime: str, *, tty: bool, stdin: bool,
           log_path: str | None, log_max: int = 0, meanwhile=None) -> tuple[int, int]:
    """Start conmon, which creates the container; return (container pid, conmon pid).

    `meanwhile()` runs while conmon and the runtime's `create` work (tens of
    milliseconds, mostly on the other core): the caller's chance to load
    what it needs next.
    """
    sdir = state_dir(cid)
    for d in (sdir / "persist", exit_file(cid).parent, socket_dir()):
        d.mkdir(parents=True, exist_ok=True)
    exit_file(cid).unlink(missing_ok=True)
    (sdir / "persist" / "oom").unlink(missing_ok=True)
    rt = ocicli.base_args(runtime)
    argv = [conmon_binary(), "--api-version", "1", "-c", cid, "-u", cid[:12], "-n", name,
            "-r", rt[0], "-b", bundle, "-p", str(sdir / "pidfile"),
            "--conmon-pidfile", str(sdir / "conmon.pid"),
            "--exit-dir", str(exit_file(cid).parent), "--persist-dir", str(sdir / "persist"),
            "--socket-dir-path", str(socket_dir()), "--log-level", "error",
            "--exit-command", "/bin/sh"]
    for arg in ("-c", _EXIT_SCRIPT, "sh", str(sdir / "attached"), ketch_binary(), cid):
        argv += ["--exit-command-arg", arg]
    for arg in rt[1:]:
        argv += ["--runtime-arg", arg]
    argv += ["-l", f"k8s-file:{log_path}" if log_path else "none:"]
    if log_max:
        argv += ["--log-size-max", str(log_max)]
    if tty:
        argv.append("-t")
    if stdin:
        argv.append("-i")
        if tty:
            # A tty client leaves by detaching (ctrl-p ctrl-q), which must not end the
            # container's stdin; a pipe's EOF must (Docker's StdinOnce).
            argv.append("--leave-stdin-open")
    r, w = os.pipe()
    try:
        env = dict(os.environ, _OCI_SYNCPIPE=str(w))
        proc = subprocess.Popen(argv, pass_fds=(w,), env=env, cwd=bundle,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        os.close(w)
        w = -1
        if meanwhile is not None:
            meanwhile()
        msg = _read_sync(r, proc)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    pid = int(msg.get("data", -1))
    if pid <= 0:
        raise create_error(str(msg.get("message") or "container create failed"))
    try:
        mon = int((sdir / "conmon.pid").read_text().strip())
    except (OSError, ValueError):
        mon = 0
    return pid, mon


def _read_sync(fd: int, proc: subprocess.Popen) -> dict:
    buf = b""
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            raise KetchError("conmon did not report the container's pid within 120s")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    if not buf:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        proc.wait()
        raise KetchError(f"conmon failed: {err or 'exited with status ' + str(proc.returncode)}")
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    return json.loads(buf.split(b"\n", 1)[0])


def create_error(raw: str) -> KetchError:
    """Docker's wording and exit code for a container that could not be started."""
    msg = ocicli.clean_message(raw)
    code = ocicli.exec_exit_code(msg)
    text = f"OCI runtime create failed: {msg}"
    if code:
        return ExecError(text, exit_code=code)
    return KetchError(text)


def attach_socket(cid: str) -> socket.socket:
    """Connect to conmon's attach socket (through /proc/self/fd: the path may be long)."""
    d = os.open(socket_dir() / cid[:12], os.O_PATH | os.O_DIRECTORY)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(f"/proc/self/fd/{d}/attach")
    finally:
        os.close(d)
    return s


def resize(cid: str, bundle: str, rows: int, cols: int) -> None:
    """Tell conmon the terminal size: `<h> <w>` on its winsz fifo, or `1 <h> <w>` on ctl."""
    fifo = os.path.join(bundle, "winsz")
    msg = f"{rows} {cols}\n"
    if not os.path.exists(fifo):
        fifo, msg = os.path.join(bundle, "ctl"), f"1 {rows} {cols}\n"
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, msg.encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def forget(cid: str, keep_exit: bool = False) -> None:
    """Remove the volatile files of a container (its monitor has gone)."""
    shutil.rmtree(state_dir(cid), ignore_errors=True)
    link = socket_dir() / cid[:12]
    if link.is_symlink() or link.exists():
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)
        else:
            link.unlink(missing_ok=True)
    if not keep_exit:
        exit_file(cid).unlink(missing_ok=True)
