"""Runtime error messages -> one line and Docker's 126/127 (engine/ocicli.py, monitor.py)."""

from __future__ import annotations

import pytest

from ketch.engine import monitor, ocicli
from ketch.errors import ExecError, InvalidArgument

RUNC = ('time="2026-11-26T17:18:50Z" level=error msg="runc create failed: unable to start '
        'container process: exec: \\"nosuch\\": executable file not found in $PATH"\n')


def test_runc_logfmt_and_json_messages_are_cleaned():
    assert ocicli.clean_message(RUNC) == ('runc create failed: unable to start container '
                                          'process: exec: "nosuch": executable file not found '
                                          'in $PATH')
    assert ocicli.clean_message(b'{"level":"error","msg":"boom"}\n') == "boom"
    assert ocicli.clean_message("") == "unknown error"


def test_exec_failures_map_to_126_and_127():
    err = monitor.create_error(RUNC)
    assert isinstance(err, ExecError) and err.exit_code == 127
    assert str(err).startswith("OCI runtime create failed: ")
    denied = monitor.create_error('msg="exec: \\"/etc\\": permission denied"')
    assert denied.exit_code == 126
    other = monitor.create_error('msg="cgroup: no space left on device"')
    assert other.exit_code == 125 and not isinstance(other, ExecError)


def test_runtime_names(monkeypatch, tmp_path):
    monkeypatch.setenv("KETCH_OCI_RUNTIME", "/bin/true")
    assert ocicli.binary("") == "/bin/true" and ocicli.binary("runc") == "/bin/true"
    with pytest.raises(InvalidArgument, match="unknown or invalid runtime name: crun"):
        ocicli.binary("crun")
    with pytest.raises(InvalidArgument):
        ocicli.binary(str(tmp_path / "missing"))


def test_ketch_runc_short_verbs_run_in_process_only_for_ketch_runc(monkeypatch):
    monkeypatch.delenv("KETCH_OCI_RUNTIME", raising=False)
    assert ocicli.in_process("") and ocicli.in_process("runc")
    assert not ocicli.in_process("vm") and not ocicli.in_process("/usr/sbin/runc")
    monkeypatch.setenv("KETCH_OCI_RUNTIME", "/usr/sbin/runc")
    assert not ocicli.in_process("")


@pytest.mark.parametrize("args", [("state", "nosuch"), ("start", "nosuch"),
                                  ("kill", "nosuch", "TERM"), ("delete", "nosuch"),
                                  ("delete", "--force", "nosuch"), ("pause", "nosuch"),
                                  ("kill", "bad/id"), ("kill", "nosuch", "NOSIG")])
def test_in_process_answers_like_the_command(monkeypatch, tmp_path, args):
    """Same exit status and message as `ketch-runc --root R <args>` (no container needed)."""
    monkeypatch.setenv("KETCH_RUNROOT", str(tmp_path))
    monkeypatch.delenv("KETCH_OCI_RUNTIME", raising=False)
    inproc = ocicli.run("", *args, check=False)
    monkeypatch.setenv("KETCH_OCI_RUNTIME", ocicli.binary(""))   # absolute: the command line
    assert not ocicli.in_process("")
    cmd = ocicli.run("", *args, check=False)
    assert (inproc.returncode, inproc.stdout) == (cmd.returncode, cmd.stdout)
    assert inproc.stderr.decode().strip() == cmd.stderr.decode().strip()
    if args == ("delete", "--force", "nosuch"):
        assert inproc.returncode == 0
    else:
        assert inproc.returncode != 0 and inproc.stderr.startswith(b"ketch-runc: ")
