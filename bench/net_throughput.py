"""Network benchmark: TCP throughput and connection set-up through ketch's networking.

Measures, in one run and with the same small Python sender/receiver:
  * TCP throughput host loopback (the baseline), container -> container on a
    user network (veth + bridge), host -> published port (127.0.0.1 and the
    host's own address: nftables DNAT), each as a ratio to loopback;
  * connection set-up latency (connect + first byte + close) through a
    published port vs plain loopback;
  * the same against Docker (its own bridge, docker-proxy off or on as
    configured) when `docker` answers; otherwise that row says so.

The "containers" are processes in fresh network namespaces attached with
ketch.engine.networks, exactly what `ketch run` does after `create`.
Everything runs under a private KETCH_ROOT and is removed at the end.

    sudo .venv/bin/python bench/net_throughput.py [--seconds 2] [--rounds 3] [--connects 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ketch.bench.workloads import free_port

PY = sys.executable
RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(128)
print("ready", flush=True)
mode = sys.argv[2]
while True:
    c, _ = s.accept()
    if mode == "sink":
        n, t0 = 0, time.monotonic()
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            n += len(b)
        print(n, time.monotonic() - t0, flush=True)
    else:
        c.sendall(b"x")
    c.close()
"""
SENDER = r"""
import socket, sys, time
host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
buf = b"\0" * (1 << 20)
s = socket.create_connection((host, port))
end = time.monotonic() + secs
while time.monotonic() < end:
    s.sendall(buf)
s.close()
"""
CONNECTOR = r"""
import json, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    t0 = time.perf_counter()
    c = socket.create_connection((host, port))
    c.recv(1)
    c.close()
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def _in(pid: int | None, *cmd: str) -> list[str]:
    return (["nsenter", "-t", str(pid), "-n"] if pid else []) + list(cmd)


class Receiver:
    def __init__(self, pid: int | None, port: int, mode: str):
        self.proc = subprocess.Popen(_in(pid, PY, "-c", RECEIVER, str(port), mode),
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def result(self) -> tuple[int, float]:
        n, secs = self.proc.stdout.readline().split()
        return int(n), float(secs)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def throughput(recv_pid, send_pid, host: str, port: int, listen_port: int, secs: float) -> float:
    r = Receiver(recv_pid, listen_port, "sink")
    try:
        subprocess.run(_in(send_pid, PY, "-c", SENDER, host, str(port), str(secs)), check=True)
        n, elapsed = r.result()
    finally:
        r.stop()
    return n * 8 / elapsed / 1e9


def connect_latency(recv_pid, host: str, port: int, listen_port: int, n: int) -> float:
    r = Receiver(recv_pid, listen_port, "greet")
    try:
        out = subprocess.run(_in(None, PY, "-c", CONNECTOR, host, str(port), str(n)),
                             check=True, capture_output=True, text=True).stdout
    finally:
        r.stop()
    return statistics.median(json.loads(out)) * 1e6


def _box() -> subprocess.Popen:
    p = subprocess.Popen(["unshare", "--net", "--", "/bin/busybox", "sleep", "600"])
    time.sleep(0.1)
    return p


def _host_address() -> str:
    """A global IPv4 address of the host itself (not loopback, not a ketch bridge)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for a in ipr.get_addr(family=2):
            if a["scope"] == 0 and not names.get(a["index"], "").startswith(("k", "lo")):
                return a.get_attr("IFA_ADDRESS")
    raise SystemExit("the host has no global IPv4 address")


def run(secs: float, connects: int, rounds: int) -> dict:
    from ketch.engine import db, networks

    conn = db.connect()
    a, b = _box(), _box()
    res: dict = {}
    net = networks.create(conn, "benchnet")
    try:
        sa = networks.attach(conn, "a" * 64, "benchnet", f"/proc/{a.pid}/ns/net", {"name": "a"})
        networks.attach(conn, "b" * 64, "benchnet", f"/proc/{b.pid}/ns/net",
                        {"name": "b", "ports": ["127.0.0.1::9000", "0.0.0.0::9001"]})
        sb = networks.settings(conn, "b" * 64)
        ip_b = sb["IPAddress"]
        p_lo = int(sb["Ports"]["9000/tcp"][0]["HostPort"])
        p_any = int(sb["Ports"]["9001/tcp"][0]["HostPort"])
        lo1, lo2 = free_port(), free_port()
        hostip = _host_address()
        paths = {
            "loopback_gbps": (None, None, "127.0.0.1", lo1, lo1),
            "c2c_gbps": (b.pid, a.pid, ip_b, 9000, 9000),
            "published_lo_gbps": (b.pid, None, "127.0.0.1", p_lo, 9000),
            "published_hostip_gbps": (b.pid, None, hostip, p_any, 9001),
        }
        # Interleaved rounds, median per path: the machine is shared and noisy.
        samples: dict = {k: [] for k in paths}
        for _ in range(rounds):
            for key, args in paths.items():
                samples[key].append(throughput(*args, secs))
        res.update({k: statistics.median(v) for k, v in samples.items()})
        res["connect_loopback_us"] = connect_latency(None, "127.0.0.1", lo2, lo2, connects)
        res["connect_published_us"] = connect_latency(b.pid, "127.0.0.1", p_lo, 9000,
                                                      connects)
        res["ip_a"] = sa["IPAddress"]
    finally:
        networks.detach(conn, "a" * 64)
        networks.detach(conn, "b" * 64)
        networks.rm(conn, net["Id"])
        for p in (a, b):
            p.kill()
            p.wait()
    return res


def run_docker(secs: float, connects: int, rounds: int) -> dict:
    """The same paths through a private dockerd (see bench/net_docker.py)."""
    import net_docker

    res: dict = {}
    with net_docker.dockerd() as d:
        img = "ketch-bench-busybox:1"
        d("run", "-d", "--name", "bench-a", img, "sleep", "600")
        d("run", "-d", "--name", "bench-b", "-p", "127.0.0.1::9000", "-p", "9001",
          img, "sleep", "600")
        a, b, ip_b = d.pid("bench-a"), d.pid("bench-b"), d.ip("bench-b")
        p_lo = int(d("port", "bench-b", "9000/tcp").split(":")[-1])
        p_any = int(d("port", "bench-b", "9001/tcp").splitlines()[0].split(":")[-1])
        lo1, lo2 = free_port(), free_port()
        paths = {
            "loopback_gbps": (None, None, "127.0.0.1", lo1, lo1),
            "c2c_gbps": (b, a, ip_b, 9000, 9000),
            "published_lo_gbps": (b, None, "127.0.0.1", p_lo, 9000),
            "published_hostip_gbps": (b, None, _host_address(), p_any, 9001),
        }
        samples: dict = {k: [] for k in paths}
        for _ in range(rounds):
            for key, args in paths.items():
                samples[key].append(throughput(*args, secs))
        res.update({k: statistics.median(v) for k, v in samples.items()})
        res["connect_loopback_us"] = connect_latency(None, "127.0.0.1", lo2, lo2, connects)
        res["connect_published_us"] = connect_latency(b, "127.0.0.1", p_lo, 9000, connects)
    return res


def report(title: str, res: dict, connects: int) -> None:
    base = res["loopback_gbps"]
    print(f"{title}\n{'path':<34}{'Gbit/s':>8}{'ratio':>8}")
    for key, label in (("loopback_gbps", "host loopback (baseline)"),
                       ("c2c_gbps", "container -> container (bridge)"),
                       ("published_lo_gbps", "host -> published 127.0.0.1"),
                       ("published_hostip_gbps", "host -> published host address")):
        print(f"{label:<34}{res[key]:>8.2f}{res[key] / base:>8.2f}")
    lo, pub = res["connect_loopback_us"], res["connect_published_us"]
    print(f"connect+first byte, median of {connects}: loopback {lo:.0f} us, "
          f"published port {pub:.0f} us ({pub / lo:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connects", type=int, default=300)
    ap.add_argument("--no-docker", action="store_true", help="Skip the dockerd comparison.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ketch-netbench-") as tmp:
        os.environ["KETCH_ROOT"] = f"{tmp}/root"
        os.environ["KETCH_RUNROOT"] = f"{tmp}/run"
        res = run(args.seconds, args.connects, args.rounds)
    report("ketch (nftables DNAT, veth + bridge)", res, args.connects)
    if args.no_docker:
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import net_docker

    if not net_docker.available():
        print("docker: dockerd is not installed on this host, no comparison")
        return
    try:
        dres = run_docker(args.seconds, args.connects, args.rounds)
    except RuntimeError as exc:
        print(f"docker: comparison skipped: {exc}")
        return
    report("docker (private dockerd, --iptables=false: docker-proxy)", dres, args.connects)


if __name__ == "__main__":
    main()
