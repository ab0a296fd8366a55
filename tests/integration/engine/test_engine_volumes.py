"""Named volumes across containers, `volume` commands, events, prune."""

from __future__ import annotations

import json


def test_named_volume_persists_and_is_protected_while_used(ketch, busybox):
    assert ketch("volume", "create", "--label", "k=v", "data").stdout.strip() == "data"
    ketch("run", "--rm", "--network", "none", "-v", "data:/data", busybox, "sh", "-c",
          "echo kept > /data/f")
    out = ketch("run", "--name", "reader", "--network", "none",
                "--mount", "type=volume,source=data,target=/d,readonly", busybox,
                "sh", "-c", "cat /d/f; touch /d/x 2>&1 || true").stdout
    assert out.startswith("kept\n") and "Read-only file system" in out
    busy = ketch("volume", "rm", "data", check=False)
    assert busy.returncode != 0 and "volume is in use" in busy.stderr
    doc = json.loads(ketch("volume", "inspect", "data").stdout)[0]
    assert doc["Labels"] == {"k": "v"} and doc["Driver"] == "local"
    ketch("rm", "reader")
    assert ketch("volume", "ls", "-q").stdout.split() == ["data"]
    ketch("volume", "rm", "data")
    assert ketch("volume", "ls", "-q").stdout == ""


def test_anonymous_volume_goes_with_rm_v_and_events_are_recorded(ketch, busybox):
    ketch("run", "--name", "anon", "--network", "none", "-v", "/scratch", busybox, "true")
    assert len(ketch("volume", "ls", "-q").stdout.split()) == 1
    ketch("rm", "-v", "anon")
    assert ketch("volume", "ls", "-q").stdout == ""
    actions = [json.loads(line)["Action"] for line in
               ketch("events", "--since", "0", "--until", "9999999999", "--format", "json")
               .stdout.splitlines()]
    assert actions == ["create", "start", "die", "destroy"]


def test_container_prune_removes_only_stopped(ketch, busybox):
    ketch("create", "--name", "idle", "--network", "none", busybox, "true")
    ketch("run", "-d", "--name", "live", "--network", "none", busybox, "sleep", "60")
    try:
        out = ketch("container", "prune", "-f").stdout
        assert "Deleted Containers" in out
        assert ketch("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["live"]
    finally:
        ketch("rm", "-f", "live")
