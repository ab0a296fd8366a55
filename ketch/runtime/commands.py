"""One function per `ketch-runc` command: parsed options in, output and exit code out.

`json` is imported where output is made, not here: create/start/run/delete
(the container start path) never load it.
"""

from __future__ import annotations

import os
import sys

from ketch.errors import AlreadyExists, InvalidArgument, NotFound
from ketch.runtime.state import Container


def _out(obj) -> None:
    import json
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def cmd_create(root: str, opts: dict, pos: list[str], early: dict | None = None) -> int:
    from ketch.runtime.create import create, options
    create(root, pos[0], opts.get("bundle") or ".", **options(opts), early=early)
    return 0


def cmd_start(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    container.start(Container.load(root, pos[0]))
    return 0


def cmd_run(root: str, opts: dict, pos: list[str], early: dict | None = None) -> int:
    from ketch.runtime import container, run
    from ketch.runtime.create import create, options
    c, pid = create(root, pos[0], opts.get("bundle") or ".", **options(opts),
                    own_console=not opts.get("detach"), early=early)
    try:
        container.start(c)
    except BaseException:
        container.delete(c, force=True)  # a run that cannot start leaves nothing behind
        raise
    if opts.get("detach"):
        return 0
    return run.wait_and_delete(c, pid)


def cmd_state(root: str, opts: dict, pos: list[str]) -> int:
    _out(Container.load(root, pos[0]).oci_state())
    return 0


def cmd_kill(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    sig = container.parse_signal(pos[1] if len(pos) > 1 else "TERM")
    container.kill(Container.load(root, pos[0]), sig, bool(opts.get("all")))
    return 0


def cmd_delete(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    from ketch.runtime.state import check_id
    check_id(pos[0])
    try:
        c = Container.load(root, pos[0])
    except NotFound:
        if not opts.get("force"):
            raise
        # runc: delete --force of a missing container succeeds. A directory whose
        # state.json is missing or torn (create killed before it wrote it; a crash,
        # as state is written without fsync) goes too, with whatever is still in the
        # cgroup such a create makes for it (its state, which could name another, is
        # gone).
        data: dict = {"config": {}}
        if os.path.isdir(os.path.join(root, pos[0])):
            from ketch.runtime.cgroups import manager_for
            cg = manager_for(None, pos[0])
            cg.created = [d for d in dict.fromkeys(cg.paths.values()) if os.path.isdir(d)]
            if cg.created:
                data["cgroup"] = cg.to_state()
        c = Container(root, pos[0], data)
    container.delete(c, bool(opts.get("force")))
    return 0


def cmd_pause(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    container.pause(Container.load(root, pos[0]))
    return 0


def cmd_resume(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    container.resume(Container.load(root, pos[0]))
    return 0


def cmd_list(root: str, opts: dict, pos: list[str]) -> int:
    import json

    from ketch.runtime.state import list_ids
    states = []
    for cid in list_ids(root):
        try:
            states.append(Container.load(root, cid).oci_state())
        except Exception:  # noqa: BLE001 - a half-written dir must not break `list`
            continue
    if opts.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif opts.get("format") == "json":
        sys.stdout.write(json.dumps(states) + "\n")
    elif opts.get("format") not in (None, "table"):
        raise InvalidArgument(f"--format: must be table or json, not {opts['format']!r}")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")] + [
            (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], "root")
            for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            sys.stdout.write("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return 0


def cmd_ps(root: str, opts: dict, pos: list[str]) -> int:
    import json

    from ketch.runtime import container
    pids = container.pids(Container.load(root, pos[0]))
    if opts.get("format") == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    import subprocess
    out = subprocess.run(["ps", *(pos[1:] or ["-ef"])], capture_output=True, text=True,
                         check=False).stdout.splitlines()
    if not out:
        return 1
    header = out[0].split()
    col = header.index("PID") if "PID" in header else 1
    sys.stdout.write(out[0] + "\n")
    for line in out[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            sys.stdout.write(line + "\n")
    return 0


def cmd_events(root: str, opts: dict, pos: list[str]) -> int:
    import json
    import time

    from ketch.runtime import container
    c = Container.load(root, pos[0])
    if opts.get("stats"):
        sys.stdout.write(json.dumps(container.stats(c)) + "\n")
        return 0
    interval = float(str(opts.get("interval") or "5s").rstrip("s"))
    while c.status() != "stopped":
        sys.stdout.write(json.dumps(container.stats(c)) + "\n")
        sys.stdout.flush()
        time.sleep(interval)
    return 0


def cmd_spec(root: str, opts: dict, pos: list[str]) -> int:
    import json

    from ketch.oci.runtime_spec import default_spec
    path = os.path.join(opts.get("bundle") or ".", "config.json")
    if os.path.exists(path):
        raise AlreadyExists(f"{path} already exists; remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(bool(opts.get("rootless"))), f, indent="\t")
        f.write("\n")
    return 0


def cmd_features(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime.features import features
    _out(features())
    return 0


def cmd_exec(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import exec_
    return exec_.run(Container.load(root, pos[0]), opts, pos[1:])


def cmd_update(root: str, opts: dict, pos: list[str]) -> int:
    from ketch.runtime import container
    c = Container.load(root, pos[0])
    c.need("created", "running", "paused", verb="update")
    res = _update_resources(opts)
    from ketch.runtime.cgroups import CgroupManager
    CgroupManager.validate(res)
    container.update(c, res)
    return 0


def _update_resources(opts: dict) -> dict:
    import json
    if opts.get("resources"):
        src = opts["resources"]
        data = sys.stdin.read() if src == "-" else open(src).read()
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InvalidArgument(f"--resources: invalid JSON: {exc}") from None
    res: dict = {}

    def num(key: str) -> int | None:
        v = opts.get(key)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise InvalidArgument(f"--{key.replace('_', '-')}: not a number: {v!r}") from None
    mem = {k: num(o) for k, o in (("limit", "memory"), ("swap", "memory_swap"),
                                  ("reservation", "memory_reservation"))}
    cpu = {k: num(o) for k, o in (("shares", "cpu_shares"), ("quota", "cpu_quota"),
                                  ("period", "cpu_period"))}
    cpu.update(cpus=opts.get("cpuset_cpus"), mems=opts.get("cpuset_mems"))
    for key, d in (("memory", mem), ("cpu", cpu)):
        d = {k: v for k, v in d.items() if v is not None}
        if d:
            res[key] = d
    if num("pids_limit") is not None:
        res["pids"] = {"limit": num("pids_limit")}
    return res
