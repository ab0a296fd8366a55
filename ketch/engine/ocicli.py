"""The OCI runtime's command line, as the engine drives it (like Podman drives runc).

Runtime names: "" / "runc" -> ketch-runc (or $KETCH_OCI_RUNTIME, which lets
a host runc stand in), "vm" -> ketch-runv, an absolute path -> that binary.
Every call passes `--root <paths.runtime_state_root()>`.

When the runtime is ketch's own ketch-runc, the short verbs (start, state,
kill, delete, pause, resume) run as library calls in this process, on the
same state root: each would otherwise cost a Python interpreter start
(start and delete together: 40-60 ms of a `run --rm` here, BENCHMARKS.md). `create` stays a command,
because the monitor runs it and becomes the container's parent; other runtimes
(runc through $KETCH_OCI_RUNTIME, ketch-runv) always get their command line.
Setting KETCH_OCI_RUNTIME to ketch-runc's absolute path selects the command
line for ketch-runc too.
"""

from __future__ import annotations

import json
import os
import sys

from ketch import paths
from ketch.errors import FailedPrecondition, InvalidArgument, KetchError

#: `--runtime` values that mean ketch's runc-compatible runtime, and the micro-VM one.
CONTAINER_NAMES = ("", "runc", "ketch-runc")
VM_NAMES = ("vm", "ketch-runv")


def is_vm(runtime: str) -> bool:
    return runtime in VM_NAMES


def binary(name: str = "") -> str:
    """Absolute path of the runtime binary chosen by `--runtime`."""
    if name in CONTAINER_NAMES:
        name = os.environ.get("KETCH_OCI_RUNTIME") or "ketch-runc"
    elif is_vm(name):
        name = "ketch-runv"
    elif not name.startswith("/"):
        raise InvalidArgument(f"unknown or invalid runtime name: {name}")
    if name.startswith("/"):
        if not os.access(name, os.X_OK):
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return name
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    import shutil
    found = shutil.which(name)
    if not found:
        raise FailedPrecondition(f"OCI runtime {name!r} not found in $PATH")
    return found


def base_args(runtime: str) -> list[str]:
    return [binary(runtime), "--root", str(paths.runtime_state_root())]


def in_process(runtime: str) -> bool:
    """True when `runtime` is ketch's own ketch-runc (served here as a library)."""
    return runtime in CONTAINER_NAMES and \
        os.environ.get("KETCH_OCI_RUNTIME", "") in ("", "ketch-runc")


class Completed:
    """A runtime call's outcome, shaped as subprocess.CompletedProcess (whose module
    the in-process calls of a container start do not need to import)."""

    __slots__ = ("args", "returncode", "stdout", "stderr")

    def __init__(self, args: list[str], returncode: int, stdout: bytes, stderr: bytes):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


def run(runtime: str, *args: str, check: bool = True, timeout: float = 60,
        input: bytes | None = None) -> Completed:
    """One runtime call; a failure becomes a KetchError carrying the runtime's message.

    The result has the command's shape (returncode, stdout, stderr as bytes)
    whether it ran as a command or, for ketch-runc's short verbs, in-process.
    """
    proc = None
    if args and args[0] in LIBRARY_VERBS and input is None and in_process(runtime):
        # No timeout needed there: these verbs do not wait, except `start`, until
        # the created init (alive, or start fails at once) takes its release byte.
        proc = _library_call(list(args))
    if proc is None:
        import subprocess
        argv = [*base_args(runtime), *args]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired:
            raise KetchError(f"OCI runtime {args[0]} timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        raise KetchError(f"OCI runtime {args[0]} failed: {clean_message(proc.stderr)}")
    return proc


LIBRARY_VERBS = ("start", "state", "kill", "delete", "pause", "resume")


def preload(runtime: str) -> None:
    """Import the runtime library that start/delete will use (while the monitor creates)."""
    if in_process(runtime):
        import ketch.runtime.cgroups  # noqa: F401
        import ketch.runtime.cli  # noqa: F401
        import ketch.runtime.commands  # noqa: F401
        import ketch.runtime.container  # noqa: F401


def _library_call(args: list[str]) -> Completed | None:
    """ketch-runc's verb `args[0]` through ketch.runtime, as `ketch-runc --root R ...` would.

    Errors come back as the command's would (exit status, `ketch-runc: msg` on
    stderr). None: this call must run as a command after all (see _settled).
    """
    from ketch.runtime import cli, commands
    from ketch.runtime.state import Container
    root = os.path.abspath(paths.runtime_state_root())
    out, code, err = b"", 0, ""
    try:
        opts, pos = cli.parse(args[1:], cli.COMMANDS[args[0]], False)
        if not pos:
            raise InvalidArgument(f"{args[0]}: expected an ID, got none")
        if args[0] == "state":
            out = json.dumps(Container.load(root, pos[0]).oci_state()).encode()
        elif args[0] == "delete" and not _settled(root, pos[0]):
            return None
        else:
            code = getattr(commands, "cmd_" + args[0])(root, opts, pos) or 0
    except KetchError as exc:
        code, err = (exc.exit_code if exc.exit_code != 125 else 1), str(exc)
    except OSError as exc:
        from ketch.runtime.sync import errmsg
        code, err = 1, errmsg(exc)
    except Exception as exc:  # noqa: BLE001 - a runtime bug is an error line, as from the CLI
        code, err = 1, f"internal error: {type(exc).__name__}: {exc}"
    stderr = f"ketch-runc: {err}\n".encode() if err else b""
    return Completed(["ketch-runc", *args], code, out, stderr)


def _settled(root: str, cid: str) -> bool:
    """Whether `delete` has nothing to kill: the container stopped, its cgroup empty.

    Deleting a live container kills it and reaps children with waitpid(-1)
    while it waits, which must not happen in the engine's own process (it
    would steal the exit status of the engine's other children).
    """
    from ketch.runtime.state import STOPPED, Container
    try:
        c = Container.load(root, cid)
    except KetchError:
        return True   # missing or unreadable: `delete` answers as the command would
    if c.status() != STOPPED:
        return False
    return not c.data.get("cgroup") or not c.cgroup().pids()


def state(runtime: str, cid: str) -> dict | None:
    proc = run(runtime, "state", cid, check=False, timeout=20)
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def clean_message(raw: bytes | str) -> str:
    """The human part of a runtime error: runc's logfmt `msg="..."` or JSON `msg`."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    msgs = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                msgs.append(json.loads(line).get("msg", line))
                continue
            except ValueError:
                pass
        if 'msg="' in line:
            body = line.split('msg="', 1)[1].rsplit('"', 1)[0]
            msgs.append(body.replace('\\"', '"').replace("\\\\", "\\"))
        elif "msg=" in line:
            msgs.append(line.split("msg=", 1)[1])
        elif line:
            msgs.append(line)
    return "; ".join(msgs) or "unknown error"


def exec_exit_code(message: str) -> int | None:
    """Docker's mapping of a failed start: 127 command not found, 126 cannot execute."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low \
            or "not found" in low:
        return 127
    if "permission denied" in low or "exec format error" in low or "is a directory" in low:
        return 126
    return None
