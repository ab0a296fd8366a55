"""--network values as the engine sees them, and the refusals made before anything exists."""

from __future__ import annotations

import pytest

from ketch.engine import networks
from ketch.errors import InvalidArgument
from ketch.network import sandbox


@pytest.mark.parametrize("value,kind,target,netns", [
    (None, "bridge", "bridge", True), ("", "bridge", "bridge", True),
    ("default", "bridge", "bridge", True), ("mynet", "bridge", "mynet", True),
    ("none", "none", "", True), ("host", "host", "", False),
    ("container:web", "container", "web", False),
])
def test_mode(value, kind, target, netns):
    m = networks.mode(value)
    assert (m.kind, m.target, m.needs_netns) == (kind, target, netns)


def test_mode_rejects_empty_container():
    with pytest.raises(InvalidArgument, match="container:"):
        networks.mode("container:")


def test_private_modes_do_not_combine():
    assert sandbox._split_modes(["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidArgument, match="multiple networks"):
        sandbox._split_modes(["host", "b"])


def _net(name: str, options: dict | None = None) -> dict:
    return {"name": name, "options": options or {}}


def test_validate_refuses_before_touching_the_host(monkeypatch):
    monkeypatch.delenv("KETCH_PUBLISH_IP", raising=False)
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        sandbox._validate({"ip": "10.0.0.5"}, [_net("bridge")])
    with pytest.raises(InvalidArgument, match="aliases"):
        sandbox._validate({"aliases": ["x"]}, [_net("bridge")])
    with pytest.raises(InvalidArgument, match="MAC"):
        sandbox._validate({"mac": "nope"}, [_net("web")])
    with pytest.raises(InvalidArgument, match="--dns 'x.y'"):
        sandbox._validate({"dns": ["x.y"]}, [_net("web")])
    with pytest.raises(InvalidArgument, match="--add-host"):
        sandbox._validate({"extra_hosts": ["justaname"]}, [_net("web")])
    b = sandbox._validate({"ports": ["80"], "publish_all": True, "exposed": ["53/udp"]},
                          [_net("web", {"com.docker.network.bridge.host_binding_ipv4":
                                        "127.0.0.1"})])
    assert [(x["host_ip"], x["proto"], x["container_port"]) for x in b] == [
        ("127.0.0.1", "tcp", 80), ("127.0.0.1", "udp", 53)]


def test_prune_filters():
    from ketch.network import manage

    now = "2026-01-01T00:00:00+00:00"
    net = {"labels": {"team": "web", "tmp": ""}, "created": now}
    assert manage.prune_filter(["label=team"])(net)
    assert manage.prune_filter(["label=team=web"])(net)
    assert not manage.prune_filter(["label=team=db"])(net)
    assert not manage.prune_filter(["label!=tmp"])(net)
    assert manage.prune_filter(["label!=team=db"])(net)
    assert manage.prune_filter(["until=1h"])(net)  # created long before an hour ago
    assert not manage.prune_filter(["until=2025-06-01T00:00:00Z"])(net)
    for bad in ("dangling=true", "until=soon", "label"):
        with pytest.raises(InvalidArgument):
            manage.prune_filter([bad])
