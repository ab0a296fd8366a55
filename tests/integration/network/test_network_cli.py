"""`ketch network ...` and `ketch run --network` end to end, through the command line."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from tests.conftest import command
from tests.integration.network.conftest import free_port, host_address, http_get


def ketch(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run([command("ketch"), *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"ketch {' '.join(args)}: {r.returncode}\n{r.stderr}")
    return r


def test_network_commands(ketch_env):
    name = f"n{ketch_env['KETCH_TEST_ID'][:8]}"
    r = ketch("network", "create", "--subnet", "10.216.0.0/24", "--gateway", "10.216.0.254",
              "--ip-range", "10.216.0.128/25", "--label", "team=web", "--internal", name)
    net_id = r.stdout.strip()
    assert len(net_id) == 64
    out = ketch("network", "ls").stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {ln.split()[1]: ln.split() for ln in out[1:]}
    assert rows[name] == [net_id[:12], name, "bridge", "local"]
    assert {"bridge", "host", "none"} <= set(rows)
    assert ketch("network", "ls", "-q", "-f", f"name={name}").stdout == net_id[:12] + "\n"
    doc = json.loads(ketch("network", "inspect", name).stdout)[0]
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.216.0.0/24", "Gateway": "10.216.0.254",
                                      "IPRange": "10.216.0.128/25"}]
    assert doc["Internal"] is True and doc["Labels"] == {"team": "web"}
    assert ketch("network", "inspect", "-f", "{{.Driver}}", net_id[:6]).stdout == "bridge\n"
    # Bad input: one line, exit 125, names what failed.
    for args, word in ((["--subnet", "10.216.0.0/16"], "overlaps 10.216.0.0/24"),
                       (["--subnet", "10.216.1.1/24"], "10.216.1.1/24"),
                       (["--subnet", "nope"], "'nope'")):
        r = ketch("network", "create", *args, name + "x", check=False)
        assert r.returncode == 125 and word in r.stderr and len(r.stderr.splitlines()) == 1
        assert "Traceback" not in r.stderr
    r = ketch("network", "create", name, check=False)
    assert r.returncode == 125 and "already exists" in r.stderr
    r = ketch("network", "connect", name, "nosuchcontainer", check=False)
    assert r.returncode == 125 and r.stderr == "ketch: No such container: nosuchcontainer\n"
    r = ketch("network", "rm", "bridge", check=False)
    assert r.returncode != 0 and "pre-defined" in r.stderr
    assert ketch("network", "rm", name).stdout == name + "\n"
    r = ketch("network", "inspect", name, check=False)
    assert r.returncode == 125 and f"network {name} not found" in r.stderr
    ketch("network", "create", "--label", "tmp=1", name + "p")
    ketch("network", "create", name + "q")
    r = ketch("network", "prune", "-f", "--filter", "label=tmp=1")
    assert r.stdout == f"Deleted Networks:\n{name}p\n"
    r = ketch("network", "prune", "-f", "--filter", "dangling=true", check=False)
    assert r.returncode == 125 and "invalid filter" in r.stderr
    assert ketch("network", "prune", "-f").stdout == f"Deleted Networks:\n{name}q\n"


@pytest.fixture
def busybox_image(ketch_env):
    ketch("bootstrap", "busybox")


def _run_help() -> str:
    return ketch("run", "--help").stdout


def test_run_on_user_network_by_name(ketch_env, busybox_image):
    net = f"u{ketch_env['KETCH_TEST_ID'][:8]}"
    ketch("network", "create", net)
    try:
        ketch("run", "-d", "--name", "srv", "--network", net, "busybox",
              "nc", "-ll", "-p", "7000", "-e", "echo", "hello-by-name")
        r = ketch("run", "--rm", "--network", net, "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5 6 7 8 9 10; do nc -w 2 srv 7000 </dev/null && exit 0;"
                  " sleep 0.2; done; exit 1")
        assert "hello-by-name" in r.stdout
        r = ketch("network", "rm", net, check=False)
        assert r.returncode != 0 and "active endpoints" in r.stderr
        # A second network, connected while running: eth1, and twice is refused.
        ketch("network", "create", net + "b")
        ketch("network", "connect", "--alias", "srv2", net + "b", "srv")
        r = ketch("network", "connect", net + "b", "srv", check=False)
        assert r.returncode == 125 and "already exists in network" in r.stderr
        doc = json.loads(ketch("network", "inspect", net + "b").stdout)[0]
        assert [c["Name"] for c in doc["Containers"].values()] == ["srv"]
        ketch("network", "disconnect", net + "b", "srv")
    finally:
        ketch("rm", "-f", "srv", check=False)
    ketch("network", "rm", net, net + "b")


def test_run_publish(ketch_env, busybox_image, tmp_path):
    if "--publish" not in _run_help():
        pytest.skip("ketch run has no --publish yet")
    port = free_port()
    ketch("run", "-d", "--name", "web", "-p", f"{port}:8080", "busybox",
          "sh", "-c", "echo published > /tmp/i.html && httpd -f -p 8080 -h /tmp")
    try:
        text = ""
        for _ in range(100):
            try:
                text = http_get(f"http://127.0.0.1:{port}/i.html")
                break
            except httpx.TransportError:
                time.sleep(0.1)  # httpd not listening yet
        assert text == "published\n"
        assert http_get(f"http://{host_address()}:{port}/i.html") == "published\n"
        assert ketch("port", "web").stdout.strip() == f"8080/tcp -> 0.0.0.0:{port}"
        # The same host port for a second container: refused, and nothing of it remains.
        r = ketch("run", "-d", "--name", "web2", "-p", f"{port}:80", "busybox", "sleep", "60",
                  check=False)
        assert r.returncode == 125 and f"{port}" in r.stderr and "allocated" in r.stderr
    finally:
        ketch("rm", "-f", "web", "web2", check=False)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/i.html", timeout=2)
