"""Micro-VM containers: the OCI lifecycle (create, start, state, kill, delete).

State lives in <root>/<id>/: launch.json (what the shim boots), state.json
(id, bundle, pid, created), the shim's control socket, the console log and
QEMU's pid. The container's pid is the shim's; status is derived, never
stored: no live shim -> stopped; live shim and a `started` mark -> running;
else created. PIDs read back from files are checked against their command
line (which names the state directory) before any signal, so a recycled PID
is never hit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ketch.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound
from ketch.runtime.state import proc_start_time
from ketch.vm import accel, initramfs, qemu, rootfs, snapshot, spec
from ketch.vm import kernel as kernel_mod

BOOT_DEADLINE = {"kvm": 10.0, "tcg": 60.0}   # seconds; KETCH_VM_BOOT_DEADLINE overrides


def boot_deadline(accel_name: str) -> float:
    value = os.environ.get("KETCH_VM_BOOT_DEADLINE")
    try:
        return float(value) if value else BOOT_DEADLINE[accel_name]
    except ValueError:
        raise InvalidArgument(f"KETCH_VM_BOOT_DEADLINE {value!r}: not a number") from None


def default_root() -> Path:
    return Path(os.environ.get("KETCH_RUNV_ROOT") or "/run/ketch-runv")


def _check_id(cid: str) -> None:
    if not cid or "/" in cid or cid in (".", "..") or len(cid) > 128:
        raise InvalidArgument(f"invalid container id {cid!r}")


def state_dir(root: Path, cid: str, must_exist: bool = True) -> Path:
    _check_id(cid)
    d = root / cid
    if must_exist and not (d / "state.json").exists():
        raise NotFound(f"container \"{cid}\" does not exist")
    return d


def _balloon() -> bool:
    """Free page reporting through virtio-balloon; KETCH_VM_BALLOON=0 turns it off
    (the memory benchmark compares both)."""
    return os.environ.get("KETCH_VM_BALLOON", "1") not in ("0", "off", "false")


def _guest_config(kernel: kernel_mod.Kernel, plan: spec.Plan) -> tuple[list[str], list]:
    features = set()
    if plan.shares:
        features.add("virtiofs")
    if plan.hostfwd is not None:
        features.add("net")
    if _balloon():
        features.add("balloon")
    lines = [f"module {m}" for m in initramfs.modules_for(kernel, features)]
    lines.append("root /dev/vda")
    if plan.readonly:
        lines.append("readonly")
    if plan.hostfwd is not None:
        lines.append("net")
    if plan.hostname:
        lines.append(f"hostname {plan.hostname}")
    for i, (_src, dest, ro) in enumerate(plan.shares):
        lines.append(f"volume ketchfs{i} {dest} {'ro' if ro else 'rw'}")
    files = []    # (name under /ketch in the guest, host file)
    for i, (src, dest) in enumerate(plan.files):
        files.append((f"files/{i}", src))
        lines.append(f"file /ketch/files/{i} {dest}")
    lines += [f"tmpfs {dest}" for dest in plan.tmpfs]
    return lines, files


#: Longest path a unix socket can bind or connect to (sun_path holds 108 bytes).
SUN_PATH_MAX = 107


def _check_socket_room(d: Path, shares: int) -> None:
    """The shim, QMP and virtiofsd sockets live in the state dir: say so before
    boot when their paths cannot fit a unix socket address (a long --root or
    KETCH_RUNROOT), instead of failing later with QEMU's or virtiofsd's exit."""
    names = ["shim.sock", "qmp.sock"] + [f"fs{i}.sock" for i in range(shares)]
    longest = max((str(d / n) for n in names), key=len)
    if len(longest.encode()) > SUN_PATH_MAX:
        raise InvalidArgument(
            f"state directory {d} is too long for the micro-VM's unix sockets "
            f"({len(longest.encode())} bytes for {Path(longest).name}, at most {SUN_PATH_MAX}):"
            " use a shorter --root (KETCH_RUNROOT for ketch)")


def _begin(root: Path, cid: str, bundle: Path):
    """Every bundle and host check before anything is made, then the new state dir."""
    plan = spec.plan(bundle)
    kernel = kernel_mod.require()
    qemu.qemu_binary()
    if plan.shares:
        qemu.virtiofsd_binary()
    d = state_dir(root, cid, must_exist=False)
    _check_socket_room(d, len(plan.shares))
    root.mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir()
    except FileExistsError:
        raise AlreadyExists(f"container \"{cid}\" already exists") from None
    return plan, kernel, d


def create(root: Path, cid: str, bundle: Path, pid_file: Path | None = None,
           stdio: tuple[int, int, int] | None = None) -> subprocess.Popen:
    """Boot the VM with the process not yet started; returns the shim (our child)."""
    plan, kernel, d = _begin(root, cid, bundle)
    try:
        shim = _launch(d, cid, kernel, plan, stdio)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    if pid_file is not None:
        tmp = pid_file.with_name(f".{pid_file.name}.tmp")
        tmp.write_text(str(shim.pid))
        os.replace(tmp, pid_file)
    return shim


def _prepare(d: Path, kernel, plan: spec.Plan) -> dict:
    """Everything the shim needs, decided and written before anything boots."""
    accel_name = accel.choose(kernel)
    image = rootfs.image_for(plan.rootfs, plan.annotations)
    lines, files = _guest_config(kernel, plan)
    shape = {"accel": accel_name, "cpus": plan.cpus, "memory_mib": plan.memory_mib,
             "net": plan.hostfwd is not None, "balloon": _balloon(), "shares": bool(plan.shares)}
    snap = snapshot.prepare(kernel, shape, lines, image, [(n, str(src)) for n, src in files])
    if snap is not None:
        initrd = Path(snap["initrd"])    # shared by the shape; the config goes over the port
    else:
        initrd = initramfs.write_run_initrd(
            kernel, lines, d / "initrd", [(f"ketch/{n}", src.read_bytes()) for n, src in files])
    launch = {"vmlinux": str(kernel.vmlinux), "initrd": str(initrd), "accel": accel_name,
              "snapshot": snap,
              "cpus": plan.cpus, "memory_mib": plan.memory_mib, "root_image": str(image),
              "shares": [(str(s), dest, ro) for s, dest, ro in plan.shares],
              "hostfwd": plan.hostfwd, "netns": plan.netns, "balloon": _balloon(),
              "deadline": boot_deadline(accel_name), "process": plan.process.__dict__,
              "cgroups_path": plan.cgroups_path, "id": d.name}
    (d / "launch.json").write_text(json.dumps(launch))
    return launch


def _write_state(d: Path, cid: str, plan: spec.Plan, pid: int) -> None:
    state = {"ociVersion": "1.0.2", "id": cid, "pid": pid, "bundle": str(plan.bundle),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "annotations": plan.annotations, "starttime": _starttime(pid)}
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, d / "state.json")


def _launch(d: Path, cid: str, kernel, plan: spec.Plan, stdio) -> subprocess.Popen:
    _prepare(d, kernel, plan)
    r, w = os.pipe()
    fds = stdio or (0, 1, 2)
    shim = subprocess.Popen([sys.executable, "-m", "ketch.vm.shim", str(d), str(w)],
                            pass_fds=[w], stdin=fds[0], stdout=fds[1], stderr=fds[2],
                            start_new_session=True, cwd="/")
    os.close(w)
    with os.fdopen(r, "rb") as f:
        verdict = f.read().decode(errors="replace")
    if verdict != "ok":
        shim.wait()
        raise FailedPrecondition(verdict.removeprefix("error ") or "micro-VM shim died during boot")
    _write_state(d, cid, plan, shim.pid)
    return shim


def run_inline(root: Path, cid: str, bundle: Path, pid_file: Path | None = None,
               keep: bool = False) -> int:
    """`run` in the foreground: this process is the shim (one interpreter start
    less than create + start); returns the process's exit code."""
    from ketch.vm import shim as shim_mod

    plan, kernel, d = _begin(root, cid, bundle)
    shim = None
    try:
        shim = shim_mod.Shim(d, _prepare(d, kernel, plan))
        shim.boot()
        _write_state(d, cid, plan, os.getpid())
        if pid_file is not None:
            pid_file.write_text(str(os.getpid()))
        for signo in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signo, lambda n, _f: shim.started and shim.send(shim_mod.signal_frame(n)))
        shim.start_process()
        code = shim.serve()
        (d / "exit").write_text(str(code))
        return code
    finally:
        if shim is not None:
            shim.teardown()
        if not keep:
            _destroy_cgroup(d)
            shutil.rmtree(d, ignore_errors=True)


def _starttime(pid: int) -> str | None:
    start = proc_start_time(pid)
    return None if start is None else str(start)


def _alive(state: dict) -> bool:
    st = _starttime(state["pid"])
    return st is not None and st == state.get("starttime")


def state(root: Path, cid: str) -> dict:
    d = state_dir(root, cid)
    st = json.loads((d / "state.json").read_text())
    alive = _alive(st)
    status = "stopped" if not alive else ("running" if (d / "started").exists() else "created")
    if status == "running" and (mgr := _cgroup(d)) is not None and mgr.frozen():
        status = "paused"
    out = {k: st[k] for k in ("ociVersion", "id", "bundle", "created", "annotations")}
    out.update(status=status, pid=st["pid"] if alive else 0)
    exit_file = d / "exit"
    if exit_file.exists():
        out["exitCode"] = int(exit_file.read_text() or 0)
    return out


def request(root: Path, cid: str, req: dict) -> socket.socket:
    """Connect to the shim's control socket and send one request line."""
    d = state_dir(root, cid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(d / "shim.sock"))
    except OSError:
        sock.close()
        raise Conflict(f"container \"{cid}\" is not running") from None
    sock.sendall(json.dumps(req).encode() + b"\n")
    return sock


def _reply(sock: socket.socket) -> dict:
    with sock, sock.makefile("rb") as f:
        line = f.readline()
    reply = json.loads(line or b'{"error": "no reply from the shim"}')
    if "error" in reply:
        raise FailedPrecondition(reply["error"])
    return reply


def start(root: Path, cid: str) -> None:
    st = state(root, cid)
    if st["status"] != "created":
        raise Conflict(f"cannot start a container that is {st['status']}")
    _reply(request(root, cid, {"op": "start"}))


def kill(root: Path, cid: str, signo: int) -> None:
    st = state(root, cid)
    if st["status"] == "stopped":
        raise Conflict(f"container \"{cid}\" is not running")
    _reply(request(root, cid, {"op": "kill", "signal": signo}))


def _our_pid(pid: int, d: Path) -> bool:
    """True when `pid` still runs a command naming our state directory."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return str(d).encode() in f.read()
    except OSError:
        return False


def delete(root: Path, cid: str, force: bool = False) -> None:
    d = state_dir(root, cid)
    st = state(root, cid)
    if st["status"] != "stopped" and not force:
        raise Conflict(f"cannot delete container \"{cid}\" that is not stopped: {st['status']}")
    pids = []
    for name in ("state.json", "qemu.pid", "helpers.pid"):
        try:
            text = (d / name).read_text()
        except FileNotFoundError:
            continue
        pids += [json.loads(text)["pid"]] if name == "state.json" else [int(p) for p in text.split()]
    mgr = _thaw(d)
    for pid in pids:
        if _our_pid(pid, d):
            os.kill(pid, signal.SIGKILL)
    for pid in mgr.pids() if mgr is not None else []:
        try:
            os.kill(pid, signal.SIGKILL)  # only the VM's processes are in its cgroup
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(_our_pid(p, d) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    _destroy_cgroup(d)
    shutil.rmtree(d, ignore_errors=True)


def _cgroup(d: Path):
    from ketch.runtime.cgroups import CgroupManager
    try:
        return CgroupManager.from_state(json.loads((d / "cgroup.json").read_text()))
    except FileNotFoundError:
        return None


def _thaw(d: Path):
    """The VM's cgroup, thawed: frozen processes would not even die of SIGKILL."""
    mgr = _cgroup(d)
    if mgr is not None and mgr.frozen():
        mgr.thaw()
    return mgr


def _destroy_cgroup(d: Path) -> None:
    mgr = _thaw(d)
    if mgr is None:
        return
    # A killed QEMU leaves the cgroup only once it has freed the guest's memory.
    deadline = time.monotonic() + 10
    while mgr.pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    mgr.destroy()


def stats(root: Path, cid: str) -> dict:
    """The VM's cgroup statistics, in the shape of runc's `events --stats` data."""
    st = state(root, cid)
    mgr = _cgroup(state_dir(root, cid))
    if st["status"] == "stopped" or mgr is None:
        raise Conflict(f"container \"{cid}\" is not running")
    return mgr.stats()


def pause(root: Path, cid: str, on: bool) -> None:
    """Freeze (or thaw) the VM's cgroup: QEMU stops, and so does the guest."""
    st = state(root, cid)
    want = "running" if on else "paused"
    if st["status"] != want:
        raise Conflict(f"container \"{cid}\" is {st['status']}, not {want}")
    mgr = _cgroup(state_dir(root, cid))
    if mgr is None:
        raise FailedPrecondition(f"container \"{cid}\" has no cgroup to freeze")
    if on:
        mgr.freeze()
    else:
        mgr.thaw()
