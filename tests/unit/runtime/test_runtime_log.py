"""ketch-runc's error and warning lines: stderr, and the --log file in runc's shapes."""

from __future__ import annotations

import json

import pytest

from ketch.runtime import log


@pytest.fixture(autouse=True)
def _reset():
    yield
    log.configure(None, None)


def test_warning_goes_to_stderr_and_a_text_log(tmp_path, capsys):
    path = tmp_path / "log"
    log.configure(str(path), None)
    log.warn('cap "X" left out')
    assert capsys.readouterr().err == 'ketch-runc: warning: cap "X" left out\n'
    line = path.read_text()
    assert line.startswith('time="') and line.endswith(' level=warning msg="cap \\"X\\" left out"\n')


def test_error_in_json_log(tmp_path, capsys):
    path = tmp_path / "log"
    log.configure(str(path), "json")
    log.error("bad\nthing")
    assert capsys.readouterr().err == "ketch-runc: bad\nthing\n"
    entry = json.loads(path.read_text())
    assert entry["level"] == "error" and entry["msg"] == "bad\nthing" and entry["time"].endswith("Z")


def test_no_log_file_means_stderr_only(tmp_path, capsys):
    log.configure(None, "json")
    log.warn("w")
    assert capsys.readouterr().err == "ketch-runc: warning: w\n"
    assert list(tmp_path.iterdir()) == []
