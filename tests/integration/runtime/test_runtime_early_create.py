"""create() in two steps, as a `ketch run` drives it: begin() boots stage 1 and
precgroup() makes the container's cgroup before the config exists; create()
uses that cgroup when the config names it, and abandon() undoes both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ketch.runtime.cgroups import manager_for

# Run in a child: create() makes its caller a child subreaper, not for pytest.
SCRIPT = r"""
import json, sys
from ketch.runtime import create as cr
from ketch.runtime.container import delete
mode, root, bundle, cid = sys.argv[1:]
early = cr.begin()
cr.precgroup(early, cid)
made = list(early["cgroup"].paths.values())
if mode == "abandon":
    cr.abandon(early)
    print(json.dumps({"made": made}))
    sys.exit(0)
c, pid = cr.create(root, cid, bundle, early=early)
print(json.dumps({"made": made, "pid": pid, "state": c.data["cgroup"]}))
delete(c, force=True)
"""


def _run(mode: str, runc, bundle, cid: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, runc.root, str(bundle.path), cid],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_abandon_removes_the_early_cgroup_and_stage1(runc, bundle):
    got = _run("abandon", runc, bundle, "early1")
    assert got["made"] and all(p.endswith("/early1") for p in got["made"])
    assert not any(os.path.exists(p) for p in got["made"])
    # processes: the autouse no_leaks fixture checks that stage 1 is gone


def test_create_uses_the_early_cgroup_when_the_config_names_it(runc, bundle):
    bundle.linux["cgroupsPath"] = f"/{os.environ['KETCH_CGROUP_PARENT']}/early2"
    bundle.process["args"] = ["sleep", "30"]
    bundle.save()
    got = _run("create", runc, bundle, "early2")
    assert sorted(got["made"]) == sorted(manager_for(None, "early2").paths.values())
    assert json.dumps(got["state"]).count("/early2") >= len(got["made"])
    assert not any(os.path.exists(p) for p in got["made"])   # deleted with the container


def test_create_drops_a_wrong_guess(runc, bundle):
    bundle.linux["cgroupsPath"] = f"/{os.environ['KETCH_CGROUP_PARENT']}/elsewhere"
    bundle.process["args"] = ["sleep", "30"]
    bundle.save()
    got = _run("create", runc, bundle, "early3")
    assert not any(os.path.exists(p) for p in got["made"])   # the guess is gone at once
    assert "elsewhere" in json.dumps(got["state"]) and "early3" not in json.dumps(got["state"])


MISMATCH = r"""
import sys
from ketch.runtime import cli, create
root, bundle = sys.argv[1:]
early = create.begin(False)                # begun for a detached run...
early["flags"] = (False, None, 0)
stage1 = early["stage1"]
rc = cli.main(["--root", root, "run", "--bundle", bundle, "fg"], early=early)   # ...but it is not
print(rc, stage1, "undo" in early)
"""


def test_cli_drops_a_stage_1_begun_for_other_flags(runc, bundle):
    # A terminal: a foreground run must hold the console's other end itself, which a
    # stage 1 begun for a detached run does not give it.
    bundle.process["terminal"] = True
    bundle.process["args"] = ["sh", "-c", "tty >/dev/null && exit 3"]
    bundle.save()
    out = subprocess.run([sys.executable, "-c", MISMATCH, runc.root, str(bundle.path)],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    rc, stage1, pending = out.stdout.split()[-3:]
    assert rc == "3", out.stdout           # it ran on its terminal, through a stage 1 of its own
    assert pending == "False"              # the launcher's was abandoned
    assert not os.path.exists(f"/proc/{stage1}")
