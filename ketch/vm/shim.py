"""The per-VM host process: owns QEMU and virtiofsd, relays the agent's streams.

`ketch-runv create` starts it as `python -m ketch.vm.shim STATE_DIR READY_FD`
with the caller's stdio (or the pty slave for a terminal), like runc hands its
stdio to the container's process; its PID is the container's PID. It boots
the VM (or restores its shape's snapshot and sends it the run's config, see
snapshot.py), reports "ok" or "error <message>" on READY_FD, then serves the
control socket STATE_DIR/shim.sock (start, kill, exec) and exits with the
process's exit code once the agent has sent every byte of output.

    caller stdio <-> shim <-> socketpair <-> QEMU virtio-serial <-> guest agent
    exec client  <-> shim.sock (same frames, session rewritten)
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from ketch.errors import FailedPrecondition, KetchError
from ketch.vm import proto, qemu


class Shim:
    def __init__(self, state_dir: Path, launch: dict):
        self.dir = state_dir
        self.launch = launch
        self.cgroup = None
        self.qemu: subprocess.Popen | None = None
        self.helpers: list[subprocess.Popen] = []
        self.sock: socket.socket | None = None
        self.reader: proto.FrameReader | None = None
        self.send_lock = threading.Lock()
        self.started = False
        self.exit_code: int | None = None
        self.execs: dict[int, socket.socket] = {}
        self.next_session = 2

    # --- boot ----------------------------------------------------------------

    def boot(self) -> None:
        if self.launch.get("netns"):
            # The bundle asks for its own network namespace: the shim (whose pid
            # is the container's) and QEMU with its user networking move into a
            # private one before QEMU starts. What the engine attaches to
            # /proc/<pid>/ns/net (a veth on its bridge) is then the guest's way
            # out, and QEMU's forwards of published ports listen there, where
            # the bridge's DNAT delivers them -- never on the host's own
            # addresses. No other thread exists yet: unshare applies to the
            # whole shim, and QEMU inherits it.
            from ketch._sys import ns
            ns.unshare(ns.CLONE_NEWNET)
        shares = []
        for i, (host_dir, _dest, _ro) in enumerate(self.launch["shares"]):
            shares.append((f"ketchfs{i}", self._virtiofsd(i, host_dir)))
        snap = self.launch.get("snapshot")
        deadline = time.monotonic() + self.launch["deadline"]
        got = None
        if snap and os.path.exists(snap["state"]):
            got = self._restore(snap, shares, deadline)
        if got is None:
            self._start_qemu(shares)
            got = self._boot_frame(deadline)
        if got is not None and got[0] == proto.TEMPLATE:
            # A template boot (no snapshot of this shape yet): save it, once.
            t0 = time.monotonic()
            try:
                from ketch.vm import snapshot
                snapshot.save(self.dir / "qmp.sock", Path(snap["state"]))
            except (KetchError, OSError) as exc:
                # The run goes on without it; the next run of the shape tries again.
                (self.dir / "snapshot.err").write_text(str(exc))
            deadline += time.monotonic() - t0
            got = self._configure(snap, deadline)
        self._booted(got)

    def _restore(self, snap: dict, shares, deadline: float):
        """Start QEMU from the shape's snapshot and send this run's config. None
        when QEMU could not load it: the snapshot is dropped, the caller boots."""
        try:
            fd = os.open(snap["state"], os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None    # pruned meanwhile
        try:
            self._start_qemu(shares, fd)
        finally:
            os.close(fd)
        got = self._configure(snap, deadline)
        if got is None:
            Path(snap["state"]).unlink(missing_ok=True)
            self.qemu.wait()
            self.sock.close()
        return got

    def _configure(self, snap: dict, deadline: float):
        try:
            self.send(proto.config_frames(snap["files"], snap["config"]))
        except OSError:
            pass   # QEMU is gone: the read below says so
        return self._boot_frame(deadline)

    def _start_qemu(self, shares, incoming_fd: int | None = None) -> None:
        host, guest = socket.socketpair()
        cfg = qemu.VmConfig(
            vmlinux=Path(self.launch["vmlinux"]), initrd=Path(self.launch["initrd"]),
            console_log=self.dir / "console.log", agent_fd=guest.fileno(),
            accel=self.launch["accel"], cpus=self.launch["cpus"],
            memory_mib=self.launch["memory_mib"], root_image=Path(self.launch["root_image"]),
            shares=shares, hostfwd=self.launch["hostfwd"], qmp_socket=self.dir / "qmp.sock",
            balloon=self.launch.get("balloon", True), incoming_fd=incoming_fd)
        fds = [guest.fileno()] + ([incoming_fd] if incoming_fd is not None else [])
        with open(self.dir / "qemu.log", "wb") as log:
            self.qemu = subprocess.Popen(qemu.argv(cfg), pass_fds=fds,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        guest.close()
        (self.dir / "qemu.pid").write_text(str(self.qemu.pid))
        self._place_in_cgroup()
        self.sock = host
        self.reader = proto.FrameReader(host)

    def _boot_frame(self, deadline: float):
        """The guest's next frame (None: QEMU exited), or a boot error at the deadline."""
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            return self.reader.read()
        except TimeoutError:
            raise FailedPrecondition(self._boot_error(
                f"guest did not boot within {self.launch['deadline']:g}s")) from None
        except ConnectionResetError:
            return None     # QEMU died with our config unread
        finally:
            self.sock.settimeout(None)

    def _booted(self, got) -> None:
        if got is None:
            raise FailedPrecondition(self._boot_error("QEMU exited during boot"))
        if got[0] == proto.FATAL:
            raise FailedPrecondition(self._boot_error(f"guest init: {got[2].decode(errors='replace')}"))
        if got[0] != proto.READY:
            raise FailedPrecondition(self._boot_error(f"unexpected agent frame {got[0]}"))
        # The guest's own boot marks (init=, modules=, ready=, config= when its
        # config came over the port: seconds since its kernel started), for
        # bench/vm_start.py: load-independent, unlike wall time.
        (self.dir / "boot.times").write_bytes(got[2])
        if not self.launch.get("snapshot"):
            # QEMU has read the per-run initrd into guest memory; the copy can go.
            Path(self.launch["initrd"]).unlink(missing_ok=True)
        # Listen before reporting "ok": `start` connects right after.
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.dir / "shim.sock"))
        self.listener.listen(16)

    def _place_in_cgroup(self) -> None:
        """The container's cgroup holds the VM's processes (see spec.py for why no limits)."""
        from ketch.runtime.cgroups import manager_for

        if self.cgroup is None:
            mgr = manager_for(self.launch.get("cgroups_path") or None, self.launch["id"])
            # The device cgroup starts at deny-all: allow what QEMU may open (kvm, tun, vhost).
            mgr.create(devices=[{"type": "c", "major": 10, "minor": m} for m in (200, 232, 238, 241)])
            self.cgroup = mgr
            (self.dir / "cgroup.json").write_text(json.dumps(mgr.to_state()))
        for proc in [self.qemu, *self.helpers]:
            if proc.poll() is None:
                self.cgroup.add(proc.pid)

    def _virtiofsd(self, index: int, host_dir: str) -> str:
        path = self.dir / f"fs{index}.sock"
        proc = subprocess.Popen([qemu.virtiofsd_binary(), f"--socket-path={path}",
                                 "-o", f"source={host_dir}", "-o", "cache=auto"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(self.dir / f"virtiofsd{index}.log", "wb"))
        self.helpers.append(proc)
        (self.dir / "helpers.pid").write_text(" ".join(str(p.pid) for p in self.helpers))
        deadline = time.monotonic() + 5
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise FailedPrecondition(f"virtiofsd for {host_dir!r} did not start")
            time.sleep(0.005)
        return str(path)

    def _boot_error(self, what: str) -> str:
        if self.qemu is not None and self.qemu.poll() is not None:
            err = (self.dir / "qemu.log").read_text(errors="replace").strip().splitlines()
            if err:
                what += f" ({err[-1]})"
        tail = qemu.console_tail(self.dir / "console.log")
        return f"micro-VM boot failed: {what}" + (f"; console: {tail}" if tail else "")

    def teardown(self) -> None:
        for proc in [self.qemu, *self.helpers]:
            if proc is not None and proc.poll() is None:
                qemu.kill_pid(proc.pid)
            if proc is not None:
                proc.wait()
        if self.cgroup is not None:
            # virtiofsd forks its sandboxed worker: the cgroup knows every process.
            deadline = time.monotonic() + 3
            while (left := [p for p in self.cgroup.pids() if p != os.getpid()]) \
                    and time.monotonic() < deadline:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)
        for name in ("qmp.sock", "shim.sock"):
            (self.dir / name).unlink(missing_ok=True)

    # --- running -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data)

    def serve(self) -> int:
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self._pump_guest()

    def _pump_guest(self) -> int:
        out = {proto.STDOUT: 1, proto.STDERR: 2}
        while True:
            got = self.reader.read()
            if got is None:
                break
            kind, session, payload = got
            if session == 1:
                if kind in out:
                    _write_all(out[kind], payload)
                elif kind == proto.STARTED:
                    (self.dir / "guest.pid").write_text(str(struct.unpack("<I", payload)[0]))
                elif kind == proto.EXIT:
                    return proto.int_payload(payload)
            elif session in self.execs:
                conn = self.execs[session]
                try:
                    conn.sendall(proto.frame(kind, 1, payload))
                except OSError:
                    pass
                if kind == proto.EXIT:
                    self.execs.pop(session, None)
                    conn.close()
        if self.exit_code is not None:
            return self.exit_code
        tail = qemu.console_tail(self.dir / "console.log", 4)
        _write_all(2, f"ketch-runv: micro-VM stopped unexpectedly; console: {tail}\n".encode())
        return 255

    def start_process(self) -> None:
        """Run the container's process (session 1) and forward our stdin to it."""
        self.started = True
        (self.dir / "started").touch()
        process = proto.Process(**self.launch["process"])
        if process.terminal:
            process.rows, process.cols = _winsize(0)
        self.send(proto.frame(proto.EXEC, 1, process.encode()))
        threading.Thread(target=self._stdin, daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self._control, args=(conn,), daemon=True).start()

    def _control(self, conn: socket.socket) -> None:
        try:
            req = json.loads(_read_line(conn) or b"{}")
        except (ValueError, OSError):
            conn.close()
            return
        op = req.get("op")
        if op == "start" and not self.started:
            self.start_process()
            conn.sendall(b'{"ok": true}\n')
        elif op == "kill":
            signo = int(req.get("signal", signal.SIGTERM))
            if self.started:
                self.send(proto.signal_frame(1, signo))
            else:
                self.exit_code = 128 + signo
                qemu.kill_pid(self.qemu.pid)
            conn.sendall(b'{"ok": true}\n')
        elif op == "exec":
            self._exec(conn, req)
            return
        else:
            conn.sendall(json.dumps({"error": f"bad request {op!r}"}).encode() + b"\n")
        conn.close()

    def _exec(self, conn: socket.socket, req: dict) -> None:
        session = self.next_session
        self.next_session += 1
        self.execs[session] = conn
        process = proto.Process(**req["process"])
        self.send(proto.frame(proto.EXEC, session, process.encode()))
        # The client's frames name session 1; here they become this exec's.
        reader = proto.FrameReader(conn)
        try:
            while (got := reader.read()) is not None:
                kind, _s, payload = got
                if kind in (proto.STDIN, proto.SIGNAL, proto.RESIZE):
                    self.send(proto.frame(kind, session, payload))
        except OSError:
            pass

    def _stdin(self) -> None:
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            try:
                self.send(proto.frame(proto.STDIN, 1, data))
            except OSError:
                return
            if not data:
                return


def signal_frame(signo: int) -> bytes:
    return proto.signal_frame(1, signo)


def _winsize(fd: int) -> tuple[int, int]:
    rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))[:2]
    return rows or 24, cols or 80


def _tty_setup(shim: Shim) -> None:
    """fd 0 is the host pty slave: raw (the guest's pty does the line discipline),
    our controlling terminal, so a resize of the caller's master reaches the guest.
    Runs in the main thread: only it may install signal handlers."""
    attrs = termios.tcgetattr(0)
    attrs[0] = attrs[1] = attrs[3] = 0
    attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except OSError:
        pass

    def resized(*_):
        if shim.started:
            shim.send(proto.resize_frame(1, *_winsize(0)))
    signal.signal(signal.SIGWINCH, resized)


def _read_line(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    """One request line, read without buffering: an exec client's frames follow
    it at once and must stay in the socket for the frame reader."""
    line = bytearray()
    while len(line) < limit:
        byte = conn.recv(1)
        if not byte or byte == b"\n":
            break
        line += byte
    return bytes(line)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return  # the reader is gone; keep draining the guest anyway
        view = view[n:]


def main() -> None:
    state_dir, ready_fd = Path(sys.argv[1]), int(sys.argv[2])
    launch = json.loads((state_dir / "launch.json").read_text())
    shim = Shim(state_dir, launch)
    signal.signal(signal.SIGTERM, lambda *_: shim.qemu and qemu.kill_pid(shim.qemu.pid))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        shim.boot()
    except (KetchError, OSError) as exc:
        shim.teardown()
        if shim.cgroup is not None:
            shim.cgroup.destroy()
        os.write(ready_fd, f"error {exc}".encode())
        os._exit(1)
    if launch["process"].get("terminal"):
        _tty_setup(shim)
    if shim.cgroup is not None:
        # Only once booted: a shim inside the cgroup could not remove it on failure.
        shim.cgroup.add(os.getpid())
    os.write(ready_fd, b"ok")
    os.close(ready_fd)
    code = shim.serve()
    shim.teardown()
    (state_dir / "exit").write_text(str(code))
    os._exit(code & 0xFF)


if __name__ == "__main__":
    main()
