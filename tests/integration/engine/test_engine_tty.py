"""A terminal: `run -it`, detach with ctrl-p ctrl-q, `attach` again, the exit code comes back."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time


def _read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r}; got {buf[-300:]!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _until_prompt(fd: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        os.write(fd, b"\r")
        buf = b""
        step = time.monotonic() + 1
        while time.monotonic() < step:
            if select.select([fd], [], [], 0.2)[0]:
                buf += os.read(fd, 4096)
                if b"# " in buf:
                    return
    raise AssertionError("no prompt after attach")


def _on_pty(ketch, *args: str) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    proc = subprocess.Popen([ketch.bin, *args], stdin=slave, stdout=slave, stderr=slave,
                            env=ketch.env, start_new_session=True)
    os.close(slave)
    return proc, master


def test_run_it_detach_and_attach(ketch, busybox):
    proc, fd = _on_pty(ketch, "run", "-it", "--name", "tty", "--network", "none", busybox, "sh")
    try:
        _read_until(fd, b"# ")
        os.write(fd, b"tty\r")
        assert b"/dev/pts/" in _read_until(fd, b"/dev/pts/")
        os.write(fd, b"\x10\x11")                 # ctrl-p ctrl-q: detach
        assert proc.wait(timeout=60) == 0
        os.close(fd)
        assert ketch("inspect", "-f", "{{.State.Status}}", "tty").stdout.strip() == "running"
        proc, fd = _on_pty(ketch, "attach", "tty")
        _until_prompt(fd)   # attached: the shell answers an empty line with its prompt
        os.write(fd, b"exit 5\r")
        assert proc.wait(timeout=60) == 5
        os.close(fd)
        # Nobody held the foreground lock: the monitor's exit command cleaned up.
        assert ketch("wait", "tty").stdout.strip() == "5"
        assert ketch("inspect", "-f", "{{.State.Status}}", "tty").stdout.strip() == "exited"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ketch("rm", "-f", "tty")
