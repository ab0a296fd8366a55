"""The pull/push/login front end without a registry: flags, plain progress lines."""

from __future__ import annotations

import pytest

from ketch.cli.distribution import _Lines
from ketch.cli.main import main
from ketch.engine.distribution import Event


def test_plain_progress_prints_each_state_once(capsys):
    lines = _Lines()
    for ev in [Event("", "1: Pulling from lib/bb"), Event("abc", "Pulling fs layer"),
               Event("abc", "Downloading", 10, 100), Event("abc", "Downloading", 100, 100),
               Event("abc", "Download complete", 100, 100), Event("abc", "Extracting", 5, 100),
               Event("abc", "Pull complete"), Event("abc", "Pull complete")]:
        lines(ev)
    assert capsys.readouterr().out.splitlines() == [
        "1: Pulling from lib/bb", "abc: Pulling fs layer", "abc: Download complete",
        "abc: Pull complete"]


@pytest.mark.parametrize("argv, message", [
    (["login", "--password-stdin", "reg.example"],
     "ketch: Must provide --username with --password-stdin"),
    (["login", "-u", "a", "-p", "b", "--password-stdin", "reg.example"],
     "ketch: --password and --password-stdin are mutually exclusive"),
    (["pull", "--platform", "linux", "127.0.0.1:1/x"],
     "ketch: invalid platform 'linux': want os/arch[/variant]"),
])
def test_bad_flags_are_one_line_and_125(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path / "config"))
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 125
    assert capsys.readouterr().err.strip().splitlines()[-1] == message


def test_bad_reference_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pull", "Bad/Name"])
    assert exit_.value.code == 125
    err = capsys.readouterr().err.strip()
    assert err.startswith("ketch: invalid reference format") and "\n" not in err


def test_logout_when_not_logged_in(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KETCH_CONFIG", str(tmp_path / "config"))
    with pytest.raises(SystemExit) as exit_:
        main(["logout", "reg.example:5000"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == "Not logged in to reg.example:5000\n"
