"""`ketch-runv`: runc's command line, running the OCI bundle in a QEMU micro-VM.

    ketch-runv [--root DIR] create --bundle B [--pid-file P] [--console-socket S] ID
    ketch-runv start ID | state ID | kill ID [SIGNAL] | delete [--force] ID | pause ID | resume ID
    ketch-runv events [--stats] ID
    ketch-runv run [--bundle B] [--detach] ID
    ketch-runv exec [--tty] [--process P.json | [-e K=V] [--cwd D] [-u UID[:GID]] CMD...] ID

argparse rather than click keeps the import cost of this hot path low. Errors
are one line on stderr and exit status 1, as with runc; `run` and `exec` exit
with the process's own status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from ketch.errors import InvalidArgument, KetchError

_UNSUPPORTED = ("update", "ps", "checkpoint", "restore")


def parse_signal(value: str) -> int:
    name = value.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown signal {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ketch-runv")
    p.add_argument("--root", type=Path)
    for flag in ("--log", "--log-format", "--criu"):
        p.add_argument(flag)
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("create", "run"):
        c = sub.add_parser(name)
        c.add_argument("--bundle", "-b", type=Path, default=Path("."))
        c.add_argument("--pid-file", type=Path)
        c.add_argument("--console-socket")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            c.add_argument("--detach", "-d", action="store_true")
            c.add_argument("--keep", action="store_true")
        c.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        sub.add_parser(name).add_argument("id")
    k = sub.add_parser("kill")
    k.add_argument("--all", "-a", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    ev = sub.add_parser("events")
    ev.add_argument("--stats", action="store_true")
    ev.add_argument("--interval", default="5s")
    ev.add_argument("id")
    d = sub.add_parser("delete")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("id")
    e = sub.add_parser("exec")
    e.add_argument("--process", "-p", type=Path)
    e.add_argument("--tty", "-t", action="store_true")
    e.add_argument("--cwd")
    e.add_argument("--env", "-e", action="append", default=[])
    e.add_argument("--user", "-u")
    e.add_argument("--detach", "-d", action="store_true")
    e.add_argument("--pid-file", type=Path)
    e.add_argument("--console-socket")
    e.add_argument("id")
    e.add_argument("command", nargs=argparse.REMAINDER)
    for name in _UNSUPPORTED:
        u = sub.add_parser(name)
        u.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _create(args, root: Path):
    from ketch.vm import container
    slave = None
    if args.console_socket:
        from ketch.vm.execclient import console_pty
        slave = console_pty(args.console_socket)
    try:
        return container.create(root, args.id, args.bundle, args.pid_file,
                                (slave, slave, slave) if slave is not None else None)
    finally:
        if slave is not None:
            os.close(slave)


def _run(args, root: Path) -> int:
    from ketch.vm import container
    if args.detach or args.console_socket:
        # Detached or on a pty: a separate shim, as create + start would make.
        shim = _create(args, root)
        try:
            container.start(root, args.id)
        except BaseException:
            container.delete(root, args.id, force=True)
            shim.wait()
            raise
        return 0 if args.detach else _wait_and_delete(args, root, shim)
    return container.run_inline(root, args.id, args.bundle, args.pid_file, keep=args.keep)


def _wait_and_delete(args, root: Path, shim) -> int:
    from ketch.vm import container
    code = shim.wait()
    if not args.keep:
        container.delete(root, args.id, force=True)
    return code if code >= 0 else 128 - code


def _events(args, root: Path) -> int:
    """runc's `events`: the VM's cgroup stats (QEMU, helpers, shim), once or every interval."""
    import time

    from ketch.vm import container
    while True:
        print(json.dumps({"type": "stats", "id": args.id, "data": container.stats(root, args.id)}),
              flush=True)
        if args.stats:
            return 0
        time.sleep(float(args.interval.rstrip("s") or 5))
        if container.state(root, args.id)["status"] == "stopped":
            return 0


def dispatch(args) -> int:
    from ketch.vm import container
    root = args.root or container.default_root()
    if args.cmd in _UNSUPPORTED:
        raise InvalidArgument(f"{args.cmd} is not supported for micro-VMs")
    if args.cmd == "create":
        _create(args, root)
    elif args.cmd == "run":
        return _run(args, root)
    elif args.cmd == "start":
        container.start(root, args.id)
    elif args.cmd == "events":
        return _events(args, root)
    elif args.cmd in ("pause", "resume"):
        container.pause(root, args.id, args.cmd == "pause")
    elif args.cmd == "state":
        print(json.dumps(container.state(root, args.id), indent=2))
    elif args.cmd == "kill":
        container.kill(root, args.id, parse_signal(args.signal))
    elif args.cmd == "delete":
        container.delete(root, args.id, args.force)
    elif args.cmd == "exec":
        from ketch.vm import execclient
        return execclient.run(root, args)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = dispatch(args)
    except KetchError as exc:
        if args.debug or os.environ.get("KETCH_DEBUG"):
            raise
        print(f"ketch-runv: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.stdout.flush()
    threading.excepthook = lambda *_: None
    os._exit(code)


if __name__ == "__main__":
    main()
