"""`ketch exec`: one more process in a running container, through `<runtime> exec`.

The process gets the container's environment and user unless overridden; a
pty (-t) comes back from the runtime over a console socket as a file
descriptor (SCM_RIGHTS) and is copied to and from our terminal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile

from ketch.engine import ocicli, spec, usermap
from ketch.engine.containers import Container
from ketch.errors import Conflict, ExecError


def process_spec(c: Container, args: list[str], *, env: list[str], user: str, workdir: str,
                 tty: bool, privileged: bool) -> dict:
    from ketch.engine.lifecycle import bundle_dir
    with open(bundle_dir(c.id) / "config.json") as f:
        base = json.load(f)["process"]
    proc = dict(base)
    proc["args"] = args
    proc["terminal"] = tty
    proc["env"] = spec.merge_env(base.get("env", []), env)
    if user:
        proc["user"] = usermap.resolve(str(bundle_dir(c.id) / "rootfs"), user).spec()
    if workdir:
        proc["cwd"] = workdir
    if privileged:
        caps = spec.host_caps()
        proc["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    return proc


def run(conn, c: Container, args: list[str], *, env: list[str], user: str, workdir: str,
        tty: bool, interactive: bool, detach: bool, privileged: bool) -> int:
    if c.status != "running":
        raise Conflict(f"container {c.id} is not running")
    proc = process_spec(c, args, env=env, user=user, workdir=workdir, tty=tty,
                        privileged=privileged)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(proc, f)
        pfile = f.name
    try:
        argv = [*ocicli.base_args(c.options.runtime), "exec", "--process", pfile]
        if detach:
            argv.append("--detach")
        if tty:
            return _with_pty(argv, c.id, interactive)
        result = subprocess.run([*argv, c.id], stdin=None if interactive else subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        err = result.stderr.decode(errors="replace")
        if result.returncode != 0 and ("exec failed" in err or "starting container process"
                                       in err or "executable file not found" in err):
            msg = ocicli.clean_message(err)
            raise ExecError(f"OCI runtime exec failed: {msg}",
                            exit_code=ocicli.exec_exit_code(msg) or 126)
        if err:
            os.write(2, result.stderr)
        return result.returncode
    finally:
        os.unlink(pfile)


def _with_pty(argv: list[str], cid: str, interactive: bool) -> int:
    import array
    import select

    from ketch.engine.attach import raw_terminal
    d = tempfile.mkdtemp(prefix="ketch-exec-")
    path = os.path.join(d, "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    child = subprocess.Popen([*argv, "--tty", "--console-socket", path, cid],
                             stdin=subprocess.DEVNULL)
    try:
        conn, _ = srv.accept()
        fds = array.array("i")
        _msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:4])
        conn.close()
        master = fds[0]
        with raw_terminal(0, interactive):
            watch = [master] + ([0] if interactive else [])
            while True:
                ready, _, _ = select.select(watch, [], [])
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    os.write(1, data)
                if 0 in ready:
                    data = os.read(0, 8192)
                    if not data:
                        watch.remove(0)
                    else:
                        os.write(master, data)
        os.close(master)
        return child.wait()
    finally:
        srv.close()
        os.unlink(path)
        os.rmdir(d)
