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
