"""What runs inside every instance, and how the host times it.

Every workload is a busybox command line, and the busybox binary is the
host's busybox-static everywhere: `ketch bootstrap busybox` copies it into the
image, and the rootfs given to runc, podman and docker is built here from the
same file. So "% of native" compares one binary with itself.

Start times are taken on the host, from the moment a command is spawned to
its first output or first HTTP answer, with time.monotonic(). The CPU and
I/O workloads time themselves inside the instance by reading /proc/uptime
(10 ms ticks) around the work, so start-up and output plumbing (a VM's
console, the monitor) stay out of the figure; the workloads are sized to last
far longer than a tick.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

#: The trivial command of "start to first output".
TRIVIAL = ["echo", "ready"]
#: An idle instance.
IDLE = ["sleep", "86400"]
#: An app that touches ~100 MB: busybox awk builds a 100,000,000-byte string
#: (every page written), then waits. "ready" tells the host it is resident.
TOUCH_100M = ["awk", 'BEGIN { s = sprintf("%100000000s", ""); print "ready"; fflush(); '
              'system("sleep 86400") }']
#: Bytes hashed by the CPU workload in quick and full mode.
CPU_BYTES = {"quick": 16_000_000, "full": 64_000_000}
#: Megabytes written then read back by the I/O workload.
IO_MB = {"quick": 64, "full": 256}


def cpu_fragment(nbytes: int) -> str:
    """Shell: busybox sha256sum of nbytes zero bytes, timed by /proc/uptime around it."""
    return ("read s x < /proc/uptime; "
            f"busybox head -c {nbytes} /dev/zero | busybox sha256sum; "
            'read e x < /proc/uptime; echo "elapsed $s $e"')


def cpu_script(nbytes: int) -> list[str]:
    return ["sh", "-c", cpu_fragment(nbytes)]


def http_script(port: int, bind: str, prefix: str = "") -> list[str]:
    """busybox httpd in the foreground serving one small page (after `prefix`)."""
    return ["sh", "-c", f"{prefix}mkdir -p /tmp/www && echo ok > /tmp/www/index.html && "
            f"exec httpd -f -p {bind}:{port} -h /tmp/www"]


#: The I/O workload reads its file this many times (a single pass from the page
#: cache lasts only a few 10 ms ticks).
READ_PASSES = 4


def io_fragment(directory: str, mb: int, tag: str) -> str:
    """Shell: sequential write (fsync'd) then READ_PASSES reads of mb MiB in directory.

    Prints "io<tag> A B C": /proc/uptime before the write, after it, after the reads.
    """
    f = f"{directory.rstrip('/')}/ketch-bench.io"
    passes = " ".join(map(str, range(READ_PASSES)))
    return (f"read a x < /proc/uptime; busybox dd if=/dev/zero of={f} bs=1048576 count={mb} "
            f"conv=fsync 2>/dev/null && read b x < /proc/uptime && "
            f"for i in {passes}; do busybox dd if={f} of=/dev/null bs=1048576 2>/dev/null; "
            f'done && read c x < /proc/uptime && echo "io{tag} $a $b $c"; rm -f {f}')


def parse_elapsed(output: str) -> float | None:
    """Seconds from an 'elapsed START END' line (values of /proc/uptime), or None."""
    m = re.search(r"^elapsed ([0-9.]+) ([0-9.]+)\s*$", output, re.M)
    return None if m is None else float(m.group(2)) - float(m.group(1))


def parse_io(output: str, mb: int, tag: str = "") -> tuple[float, float]:
    """(write MB/s, read MB/s) from an 'io<tag> A B C' line; ValueError if absent or too fast."""
    m = re.search(rf"^io{re.escape(tag)} ([0-9.]+) ([0-9.]+) ([0-9.]+)\s*$", output, re.M)
    if m is None:
        raise ValueError(f"no I/O timing in output: {one_line(output)!r}")
    a, b, c = (float(x) for x in m.groups())
    if b - a <= 0 or c - b <= 0:
        raise ValueError(f"{mb} MiB moved within one /proc/uptime tick (10 ms): too fast to time")
    size = mb * 1048576 / 1e6
    return size / (b - a), READ_PASSES * size / (c - b)


@dataclass
class Timed:
    """What a timed process did: seconds from spawn to first output and to exit."""

    first_output: float | None
    exited: float | None
    returncode: int | None
    stdout: str
    stderr: str
    line_times: list[tuple[float, str]]


def run_timed(argv: list[str], *, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> Timed:
    """Spawn argv, note when each stdout line arrives, wait for exit (kill on timeout)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    out, err, lines, partial = bytearray(), bytearray(), [], b""
    first = None
    deadline = t0 + timeout
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            _kill_group(proc)
            break
        for key, _ in sel.select(timeout=min(left, 1.0)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            now = time.monotonic() - t0
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            if key.data == "err":
                err += chunk
                continue
            if first is None:
                first = now
            out += chunk
            partial += chunk
            *done, partial = partial.split(b"\n")
            lines += [(now, ln.decode(errors="replace")) for ln in done]
    sel.close()
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        exited = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        rc, exited = proc.wait(), None
    proc.stdout.close()
    proc.stderr.close()
    return Timed(first, exited, rc, out.decode(errors="replace"),
                 err.decode(errors="replace"), lines)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the process group this module started (start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def http_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when an HTTP server at host:port answers a GET with a status line."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def wait_http(host: str, port: int, t0: float, timeout: float) -> float | None:
    """Seconds from t0 (a monotonic time) until host:port answers, or None at timeout."""
    while time.monotonic() - t0 < timeout:
        if http_answers(host, port):
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(text: str) -> str:
    """The last non-empty line of an error output, shortened, for one-line reasons."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "no output"
    line = lines[-1]
    # Keep both ends of a long message: what failed, and the final error.
    return line if len(line) <= 240 else f"{line[:90]} ... {line[-140:]}"
