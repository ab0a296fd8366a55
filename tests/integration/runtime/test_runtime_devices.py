"""linux.devices and the device cgroup, and warnings about capabilities left out."""

from __future__ import annotations

import json
import os

import pytest

from ketch.runtime import caps

FUSE = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
        "uid": 0, "gid": 0}


def test_linux_devices_are_usable_without_a_resources_rule(runc, bundle):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs the host's fuse driver (/dev/fuse) for the device node to open")
    # The default spec's only device rule denies everything: nothing allows 10:229,
    # so only linux.devices can make the node usable (as with runc).
    assert bundle.linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    bundle.linux["devices"] = [FUSE]
    # Opening for reading creates a fuse connection that closes with the fd: harmless.
    bundle.process["args"] = ["sh", "-c", "exec 3</dev/fuse && echo fuse-open; "
                              "exec 4>>/dev/null && echo null-open"]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fuse-open", "null-open"]


def test_a_device_outside_the_rules_stays_denied(runc, bundle):
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs the host's fuse driver (/dev/fuse) for the device node to open")
    # The same node, bind-mounted from the host instead of listed in linux.devices:
    # the device cgroup (not the node's absence) must refuse it.
    bundle.config["mounts"].append({"destination": "/fuse", "type": "bind",
                                    "source": "/dev/fuse", "options": ["bind"]})
    (bundle.path / "rootfs/fuse").touch()
    bundle.process["args"] = ["sh", "-c", "(exec 3</fuse) && echo fuse-open || echo denied"]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["denied"]
    assert "Operation not permitted" in proc.stderr


def test_capabilities_left_out_are_warned_about_once_each(runc, bundle, tmp_path):
    resource = caps.CAPS["CAP_SYS_RESOURCE"]
    if caps.own_bounding() >> resource & 1:
        pytest.skip("the runtime holds CAP_SYS_RESOURCE here: no capability is left out")
    keys = ("bounding", "effective", "permitted", "inheritable", "ambient")
    bundle.process["capabilities"] = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in keys}
    bundle.process["args"] = ["sh", "-c", "grep ^CapEff: /proc/self/status"]
    bundle.save()
    log = tmp_path / "runc.log"
    proc = runc("--log", str(log), "--log-format", "json", "run", "--bundle",
                str(bundle.path), "c1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["CapEff:", f"{1 << caps.CAPS['CAP_KILL']:016x}"]
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == ["ketch-runc: warning: process.capabilities (bounding, effective, "
                        "permitted, inheritable, ambient): capability CAP_SYS_RESOURCE is "
                        "not in the runtime's bounding set, ignored"]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["level"], "CAP_SYS_RESOURCE" in e["msg"]) for e in entries] == [("warning", True)]
