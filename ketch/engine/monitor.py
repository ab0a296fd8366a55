"""The per-container monitor: ketch-monitor, a small C program (monitor.c).

ketch-monitor runs `<runtime> create`, then stays as the container's parent:
it holds stdio (pipes or the pty), writes the log, serves the attach socket,
records the exit code in <runroot>/exits/<id>, and finally starts the exit
command `ketch container cleanup <id>`, which applies the restart policy and
--rm. It detaches (fork, setsid), so it outlives the CLI. Its PSS per idle
container is in BENCHMARKS.md ("The monitor's memory").

Why our own and not conmon (which Podman and CRI-O use, and ketch used
before): the log. Docker's json-file format (`{"log":...,"stream":...,
"time":...}` per line in `<id>-json.log`, rotated by `--log-opt max-size`
and `max-file`) is what log shippers and people's scripts read, and conmon
writes only its k8s-file format; converting would have cost a second
process per container. The monitor is C, not Python, because it lives as
long as the container: an interpreter per container costs ~8 MiB. An OOM
kill is read from the container's cgroup by the cleanup (lifecycle.py).

The log file is `<bundle>/<id>-json.log`, rotated files `<id>-json.log.1`
(newest) to `.N`; `ketch logs` reads them in order (logs.py).

A foreground `ketch run` cleans up itself (it is already loaded and
waiting); it holds an flock on <dir>/attached while attached, and the
monitor tests that lock before it lets the client go: held, it does not
start the exit command (no second interpreter for the same cleanup).
"""

from __future__ import annotations

import json
import os
import select
import sys
from pathlib import Path

from ketch import paths
from ketch.engine import ocicli
from ketch.errors import ExecError, FailedPrecondition, KetchError


def state_dir(cid: str) -> Path:
    return paths.runroot() / "containers" / cid


def exit_file(cid: str) -> Path:
    return paths.runroot() / "exits" / cid


def read_exit_code(cid: str) -> int | None:
    try:
        return int(exit_file(cid).read_text().strip())
    except (OSError, ValueError):
        return None


def ketch_binary() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ketch")
    if os.access(beside, os.X_OK):
        return beside
    import shutil
    return shutil.which("ketch") or "ketch"


def monitor_binary() -> str:
    """ketch-monitor: $KETCH_MONITOR, beside our interpreter (setup.sh builds it
    there), or on PATH."""
    found = os.environ.get("KETCH_MONITOR")
    if not found:
        beside = os.path.join(os.path.dirname(sys.executable), "ketch-monitor")
        if os.access(beside, os.X_OK):
            found = beside
        else:
            import shutil
            found = shutil.which("ketch-monitor")
    if not found:
        raise FailedPrecondition("ketch-monitor is not built: run scripts/setup.sh (it "
                                 "compiles ketch/engine/monitor.c with gcc)")
    return found


def launch(cid: str, name: str, bundle: str, runtime: str, *, tty: bool, stdin: bool,
           log_path: str | None, log_max: int = 0, log_files: int = 1,
           meanwhile=None, creator: Creator | None = None) -> tuple[int, int]:
    """Start the monitor and create the container; return (container pid, monitor pid).

    For ketch-runc (served in-process, ocicli.in_process) a forked child of
    this process (a Creator: `creator`, which the caller forks early only for
    that runtime, or one forked here)
    creates the container through ketch.runtime and then execs the monitor,
    which adopts it (the container's init is that child's child already): no
    interpreter start for `ketch-runc create`. Namespace work still happens
    only in a freshly exec'd interpreter (stage 1, spawn.py). Other runtimes,
    or a process that has started threads: the monitor runs `<runtime>
    create` itself.

    `meanwhile()` runs while the container is being created (tens of
    milliseconds, mostly on the other core): the caller's chance to load what
    it needs next.
    """
    sdir = state_dir(cid)
    for d in (sdir, exit_file(cid).parent):
        d.mkdir(parents=True, exist_ok=True)
    exit_file(cid).unlink(missing_ok=True)
    argv = [monitor_binary(), "--id", cid, "--bundle", bundle,
            "--monitor-pidfile", str(sdir / "monitor.pid"),
            "--exit-file", str(exit_file(cid)), "--attach-dir", str(sdir),
            "--exit-command", ketch_binary(), "--exit-command-unless-locked", str(sdir / "attached")]
    for arg in ("container", "cleanup", cid):
        argv += ["--exit-command-arg", arg]
    if log_path:
        argv += ["--log-path", log_path, "--log-max-file", str(log_files)]
        if log_max:
            argv += ["--log-max-size", str(log_max)]
    if tty:
        argv.append("--tty")
    if stdin:
        argv.append("--stdin")
        if tty:
            # A tty client leaves by detaching (ctrl-p ctrl-q), which must not end the
            # container's stdin; a pipe's EOF must (Docker's StdinOnce).
            argv.append("--leave-stdin-open")
    if creator is None and ocicli.in_process(runtime):
        creator = prefork(tty=tty, stdin=stdin)
    if creator is not None:
        creator.go(cid, bundle, argv)
        if meanwhile is not None:
            meanwhile()
        msg = creator.result()
    else:
        import subprocess
        rt = ocicli.base_args(runtime)
        argv += ["--runtime", rt[0], "--pidfile", str(sdir / "pidfile")]
        for arg in rt[1:]:
            argv += ["--runtime-arg", arg]
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
        mon = int((sdir / "monitor.pid").read_text().strip())
    except (OSError, ValueError):
        mon = 0
    return pid, mon


def _single_threaded() -> bool:
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


class Creator:
    """A forked child that will create a ketch-runc container and become its monitor.

    Forked by prefork() as early as the caller likes: it starts init's stage 1
    at once (ketch.runtime.create.begin), so that interpreter boots while this
    process is still resolving the image and mounting the rootfs, then waits
    for go(). A Creator never told to go ends, with its stage 1, when
    abandon() closes its pipe (abandon after go is a no-op).
    """

    def __init__(self, pid: int, go_w: int, sync_r: int, cid: str | None):
        self.pid, self._go_w, self._sync_r, self.cid = pid, go_w, sync_r, cid

    def go(self, cid: str, bundle: str, argv: list[str]) -> None:
        root = os.path.abspath(paths.runtime_state_root())
        msg = json.dumps({"cid": cid, "bundle": bundle, "root": root, "argv": argv})
        try:
            os.write(self._go_w, msg.encode() + b"\n")
        except BrokenPipeError:
            pass   # it has ended already: result() reads why
        finally:
            os.close(self._go_w)
            self._go_w = -1

    def result(self) -> dict:
        try:
            return _read_sync(self._sync_r, None, self.pid)
        finally:
            os.close(self._sync_r)
            self._sync_r = -1

    def abandon(self) -> None:
        if self._go_w < 0:
            return
        os.close(self._go_w)   # EOF: it stops its stage 1 and exits
        self._go_w = -1
        os.close(self._sync_r)
        self._sync_r = -1
        os.waitpid(self.pid, 0)


def prefork(*, tty: bool, stdin: bool, cid: str | None = None) -> Creator | None:
    """Fork a Creator (None when this process runs threads: no fork then).

    With `cid` (the id the container will have) it also makes the container's
    cgroup while it waits (create.precgroup); stage 1 moves itself in later."""
    if not _single_threaded():
        return None
    go_r, go_w = os.pipe()
    sync_r, sync_w = os.pipe()
    child = os.fork()
    if child:
        os.close(go_r)
        os.close(sync_w)
        return Creator(child, go_w, sync_r, cid)
    early = None
    try:   # the child: never returns into the caller's code
        _close_fds_except(go_r, sync_w)
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        extra: list[str] = []
        if tty:
            for fd in (0, 1, 2):
                os.dup2(null, fd)
        else:
            # The runtime gives the container our stdio: make it the monitor's pipes.
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            in_r, in_w = os.pipe() if stdin else (null, -1)
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in {out_w, err_w, in_r} - {null}:
                os.close(fd)
            extra = ["--stdout-fd", str(out_r), "--stderr-fd", str(err_r)]
            if stdin:
                extra += ["--stdin-fd", str(in_w)]
        from ketch.runtime import create as _create
        early = _create.begin(own_console=tty)
        _create.warm()   # while the caller prepares the bundle, not after its go
        if cid:
            try:
                _create.precgroup(early, cid)
            except (OSError, KetchError):
                pass   # create() makes it then, and reports what fails
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(go_r, 65536)
            if not chunk:
                _create.abandon(early)   # the caller gave up before go()
                os._exit(0)
            line += chunk
        go = json.loads(line)
        os.chdir(go["bundle"])
        c, pid = _create.create(go["root"], go["cid"], go["bundle"], own_console=tty,
                                early=early)
        if tty:
            extra = ["--master-fd", str(c.console)]
        for i in range(1, len(extra), 2):
            os.set_inheritable(int(extra[i]), True)
        os.set_inheritable(sync_w, True)
        for fd in (0, 1, 2):   # the container has its own copies now
            os.dup2(null, fd)
        env = dict(os.environ, _OCI_SYNCPIPE=str(sync_w))
        os.execve(go["argv"][0], [*go["argv"], "--adopt-pid", str(pid), *extra], env)
    except BaseException as exc:  # noqa: BLE001 - reported on the sync pipe, as the monitor would
        try:
            if early is not None and "undo" in early:
                from ketch.runtime import create as _create
                _create.abandon(early)
            os.write(sync_w, (json.dumps({"data": -1, "message": _runtime_message(exc)}) +
                              "\n").encode())
        finally:
            os._exit(1)
    os._exit(1)


def _close_fds_except(*keep: int) -> None:
    """Close every fd above 2 but `keep`: nothing the caller inherited reaches the
    monitor (which lives as long as the container) or stage 1."""
    last = 2
    for fd in sorted(keep):
        os.closerange(last + 1, fd)
        last = fd
    os.closerange(last + 1, max(65536, os.sysconf("SC_OPEN_MAX")))


def _runtime_message(exc: BaseException) -> str:
    """What `ketch-runc create` would have printed for `exc`."""
    if isinstance(exc, KetchError):
        return f"ketch-runc: {exc}"
    if isinstance(exc, OSError):
        from ketch.runtime.sync import errmsg
        return f"ketch-runc: {errmsg(exc)}"
    return f"ketch-runc: internal error: {type(exc).__name__}: {exc}"


def _read_sync(fd: int, proc, child: int | None = None) -> dict:
    """The monitor's JSON line; `proc` is its Popen, or `child` the forked creator."""
    buf = b""
    while b"\n" not in buf:
        ready, _, _ = select.select([fd], [], [], 120)
        if not ready:
            raise KetchError("the monitor did not report the container's pid within 120s")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    if proc is not None:
        if not buf:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            proc.wait()
            raise KetchError("the monitor failed: "
                             f"{err or 'exited with status ' + str(proc.returncode)}")
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    elif not buf:
        _, status = os.waitpid(child, 0)
        raise KetchError(f"the monitor failed: exited with status "
                         f"{os.waitstatus_to_exitcode(status)}")
    return json.loads(buf.split(b"\n", 1)[0])


def create_error(raw: str) -> KetchError:
    """Docker's wording and exit code for a container that could not be started."""
    msg = ocicli.clean_message(raw)
    code = ocicli.exec_exit_code(msg)
    text = f"OCI runtime create failed: {msg}"
    if code:
        return ExecError(text, exit_code=code)
    return KetchError(text)


def attach_socket(cid: str):
    """Connect to the monitor's attach socket (through /proc/self/fd: the path may be long).

    A `_socket.socket`: the C type has everything attach.pump uses, and the
    `socket` module would import enum and selectors on the start path.
    """
    import _socket
    d = os.open(state_dir(cid), os.O_PATH | os.O_DIRECTORY)
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        s.connect(f"/proc/self/fd/{d}/attach")
    finally:
        os.close(d)
    return s


def resize(cid: str, bundle: str, rows: int, cols: int) -> None:
    """Tell the monitor the terminal size: `<rows> <cols>` on its winsz fifo."""
    try:
        fd = os.open(os.path.join(bundle, "winsz"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, f"{rows} {cols}\n".encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def forget(cid: str, keep_exit: bool = False) -> None:
    """Remove the volatile files of a container (its monitor has gone)."""
    import shutil
    shutil.rmtree(state_dir(cid), ignore_errors=True)
    if not keep_exit:
        exit_file(cid).unlink(missing_ok=True)
