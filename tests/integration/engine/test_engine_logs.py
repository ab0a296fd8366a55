"""The json-file log on disk: Docker's line format, its name, 16 KiB cuts, rotation."""

from __future__ import annotations

import json
import os
import re

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def _records(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_log_file_is_docker_json_file(ketch, busybox):
    script = (
        "printf 'plain\\n'; printf 'quote\" back\\\\ tab\\t lt< amp& \\303\\251 bad\\377\\n'; "
        "echo to-stderr >&2; head -c 20000 /dev/zero | tr '\\0' x; echo; printf 'no newline'")
    cid = ketch("run", "-d", "--network", "none", busybox, "sh", "-c", script).stdout.strip()
    try:
        assert ketch("wait", cid).stdout.strip() == "0"
        path = ketch("inspect", "-f", "{{.LogPath}}", cid).stdout.strip()
        assert os.path.basename(path) == f"{cid}-json.log"
        recs = _records(path)
        assert all(set(r) == {"log", "stream", "time"} and STAMP.match(r["time"]) for r in recs)
        out = [r["log"] for r in recs if r["stream"] == "stdout"]
        err = [r["log"] for r in recs if r["stream"] == "stderr"]
        assert err == ["to-stderr\n"]
        assert out[0] == "plain\n"
        assert out[1] == "quote\" back\\ tab\t lt< amp& \u00e9 bad\ufffd\n"
        # A line longer than 16 KiB is cut there, as Docker's json-file does.
        assert out[2:4] == ["x" * 16384, "x" * (20000 - 16384) + "\n"]
        assert out[4] == "no newline"
        # Docker's own byte-level escaping: <, > and & as \u003c, \u003e, \u0026.
        with open(path) as f:
            raw = f.read().splitlines()[1]
        assert raw.startswith('{"log":"quote\\" back\\\\ tab\\t lt\\u003c amp\\u0026 ')
        shown = ketch("logs", cid)
        assert shown.stdout == "".join(out) and shown.stderr == "to-stderr\n"
    finally:
        ketch("rm", "-f", cid)


def test_max_size_and_max_file_rotate(ketch, busybox):
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    cid = ketch("run", "-d", "--network", "none", "--log-opt", "max-size=1k",
                "--log-opt", "max-file=3", busybox, "sh", "-c", script).stdout.strip()
    try:
        assert ketch("wait", cid).stdout.strip() == "0"
        path = ketch("inspect", "-f", "{{.LogPath}}", cid).stdout.strip()
        assert os.path.exists(path + ".1") and os.path.exists(path + ".2")
        assert not os.path.exists(path + ".3")
        record_max = max(len(line) for p in (path, path + ".1", path + ".2")
                         for line in open(p, "rb"))
        for p in (path + ".1", path + ".2"):
            assert 1024 <= os.path.getsize(p) < 1024 + record_max
        lines = ketch("logs", cid).stdout.splitlines()
        # The oldest lines rotated away; what is left runs on, in order, to the end.
        first = int(lines[0].split("-")[1])
        assert first > 0 and lines == [f"line-{i}" for i in range(first, 300)]
        assert ketch("logs", "--tail", "2", cid).stdout == "line-298\nline-299\n"
    finally:
        ketch("rm", "-f", cid)
    # max-size alone keeps one file, started again when full.
    cid = ketch("run", "-d", "--network", "none", "--log-opt", "max-size=1k", busybox,
                "sh", "-c", script).stdout.strip()
    try:
        ketch("wait", cid)
        path = ketch("inspect", "-f", "{{.LogPath}}", cid).stdout.strip()
        assert not os.path.exists(path + ".1") and os.path.getsize(path) < 1024 + 128
        assert ketch("logs", cid).stdout.endswith("line-299\n")
    finally:
        ketch("rm", "-f", cid)


def test_bad_log_opts_are_refused(ketch, busybox):
    for opt, words in (("max-file=0", "max-file cannot be less than 1"),
                       ("max-file=two", 'invalid value for log opt max-file: "two"'),
                       ("max-size=12q", "max-size")):
        r = ketch("run", "--rm", "--log-opt", opt, busybox, "true", check=False)
        assert r.returncode == 125 and words in r.stderr, (opt, r.stderr)
    assert ketch("ps", "-aq").stdout == ""
