"""Device names per root, and the network tables' queries (in-memory SQLite)."""

from __future__ import annotations

import sqlite3

import pytest

from ketch.network import host, store


def test_names_fit_ifnamsiz_and_differ_per_root(monkeypatch, tmp_path):
    monkeypatch.delenv("KETCH_BRIDGE", raising=False)
    monkeypatch.setenv("KETCH_ROOT", "/var/lib/ketch")
    assert (host.default_bridge_name(), host.table_name(), host.tag()) == \
        ("ketch0", "ketch", "")
    default = (host.bridge_name("f" * 64), host.veth_name("a" * 64, "f" * 64))
    assert default[0].startswith("kb-") and default[1].startswith("kv_")
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "r1"))
    one = (host.default_bridge_name(), host.bridge_name("f" * 64),
           host.veth_name("a" * 64, "f" * 64), host.table_name())
    monkeypatch.setenv("KETCH_ROOT", str(tmp_path / "r2"))
    two = (host.default_bridge_name(), host.bridge_name("f" * 64),
           host.veth_name("a" * 64, "f" * 64), host.table_name())
    for name in (*default, *one, *two):
        assert len(name) <= 15, name
    assert not set(one) & set(two) and not set(one) & set(default)
    # A root's prefixes never match another root's devices (reconcile relies on it).
    prefix_two = (host.veth_prefix(), host.bridge_prefix())
    monkeypatch.setenv("KETCH_ROOT", "/var/lib/ketch")
    prefix_default = (host.veth_prefix(), host.bridge_prefix())
    assert prefix_default == ("kv_", "kb-")
    for prefixes, foreign in ((prefix_default, one + two), (prefix_two, one + default)):
        assert not [n for n in foreign if n.startswith(prefixes)], (prefixes, foreign)
    assert host.veth_name("a" * 64, "f" * 64) != host.veth_name("a" * 64, "e" * 64)


@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.executescript(store.SCHEMA)
    return conn


def _net(conn, nid: str, name: str) -> None:
    conn.execute("INSERT INTO networks (id, name, driver, bridge, subnet, gateway, created)"
                 " VALUES (?, ?, 'bridge', ?, '10.1.0.0/16', '10.1.0.1', 'now')",
                 (nid, name, "kb-" + nid[:12]))


def test_find_network_by_name_id_and_unique_prefix(db):
    _net(db, "abc" + "0" * 61, "web")
    _net(db, "abd" + "0" * 61, "db")
    assert store.find_network(db, "web")["id"].startswith("abc")
    assert store.find_network(db, "abd" + "0" * 61)["name"] == "db"
    assert store.find_network(db, "abc")["name"] == "web"
    assert store.find_network(db, "ab") is None  # ambiguous
    assert store.find_network(db, "nope") is None


def test_lease_is_unique_per_network(db):
    _net(db, "a" * 64, "web")
    row = ("e1", "a" * 64, "c1", "eth0", "kv_1", "10.1.0.2", "02:42:0a:01:00:02")
    db.execute("INSERT INTO endpoints (id, network_id, container_id, ifname, veth, ip, mac)"
               " VALUES (?,?,?,?,?,?,?)", row)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO endpoints (id, network_id, container_id, ifname, veth, ip, mac)"
                   " VALUES (?,?,?,?,?,?,?)", ("e2", "a" * 64, "c2", *row[3:]))


def test_transaction_rolls_back_and_nests(db):
    _net(db, "a" * 64, "web")
    with pytest.raises(RuntimeError):
        with store.transaction(db):
            db.execute("DELETE FROM networks")
            raise RuntimeError
    assert store.find_network(db, "web")
    db.execute("BEGIN")
    with store.transaction(db):  # inside a caller's transaction: no nested BEGIN
        db.execute("DELETE FROM networks")
    db.execute("ROLLBACK")
    assert store.find_network(db, "web")


def test_netlink_needs_no_pyroute2():
    """Listing links over ketch's own rtnetlink client loads no pyroute2 module."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ketch.network import link\n"
        "assert 'lo' in link.list_links('lo')\n"
        "assert not [m for m in sys.modules if m.startswith('pyroute2')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
