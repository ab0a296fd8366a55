"""`ketch bench` front end: bad input is one line and exit 125; plotting stays unloaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ketch.cli.bench import parse_size
from ketch.errors import InvalidArgument


def ketch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ketch", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--runtimes", "bogus"], "ketch: unknown runtime 'bogus' for bench"),
    (["--only", "nope"], "ketch: unknown measurement 'nope' for --only"),
    (["--budget", "4x"], "ketch: invalid size '4x' for --budget"),
])
def test_bad_input_is_one_line_and_125(args, message):
    r = ketch("bench", *args)
    assert r.returncode == 125
    assert r.stderr.startswith(message)
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_runs_must_be_positive():
    r = ketch("bench", "-n", "0")
    assert r.returncode == 125
    assert "0 is not in the range" in r.stderr


def test_parse_size():
    assert parse_size("512m") == 512 * 2**20
    assert parse_size("4g") == 4 * 2**30
    assert parse_size("1.5GiB") == int(1.5 * 2**30)
    assert parse_size("1000") == 1000
    with pytest.raises(InvalidArgument):
        parse_size("lots")


def test_measuring_and_reporting_import_no_plotting():
    code = ("import sys, ketch.cli.bench, ketch.bench.suite, ketch.bench.report; "
            "print('matplotlib' in sys.modules, 'rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["False", "False"]
