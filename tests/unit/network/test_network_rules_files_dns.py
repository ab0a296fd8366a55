"""nftables rendering, hosts/resolv.conf content and the DNS wire format: no root."""

from __future__ import annotations

import json
import socket
import struct

from ketch.network import dns, files, nft

NETS = [{"bridge": "kb-a", "subnet": "10.1.0.0/16", "internal": False},
        {"bridge": "kb-b", "subnet": "10.2.0.0/16", "internal": True}]
BIND = [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80,
         "container_ip": "10.1.0.2", "bridge": "kb-a"},
        {"proto": "udp", "host_ip": "127.0.0.1", "host_port": 5353, "container_port": 53,
         "container_ip": "10.1.0.3", "bridge": "kb-a"}]


def test_ruleset_is_one_atomic_replacement_of_our_table_only():
    text = nft.render("ketch_t", NETS, BIND)
    lines = text.splitlines()
    # declare + delete + create: loads whether or not the table existed, in one transaction
    assert lines[:3] == ["table ip ketch_t {}", "delete table ip ketch_t", "table ip ketch_t {"]
    assert all("table" not in ln or "ketch_t" in ln for ln in lines)


def test_ruleset_publishes_masquerades_and_isolates():
    text = nft.render("ketch", NETS, BIND)
    assert "tcp dport 8080 dnat to 10.1.0.2:80" in text
    assert "ip daddr 127.0.0.1 udp dport 5353 dnat to 10.1.0.3:53" in text
    assert text.count("fib daddr type local jump publish") == 2  # prerouting and output
    assert 'ip saddr 10.1.0.0/16 oifname != "kb-a" masquerade' in text
    assert "10.2.0.0/16 oifname !=" not in text  # internal: no egress masquerade
    assert 'iifname "kb-b" oifname != "kb-b" drop' in text
    assert 'oifname "kb-a" ip saddr 127.0.0.0/8 ct status dnat masquerade' in text
    assert 'iifname "kb-a" oifname { "kb-b" } drop' in text


def test_loopback_addresses_cannot_come_from_a_bridge():
    text = nft.render("ketch", NETS, BIND)
    assert "type filter hook prerouting priority raw" in text
    assert 'iifname { "kb-a", "kb-b" } ip daddr 127.0.0.0/8 drop' in text


def test_masquerade_can_be_turned_off_per_network():
    nets = [dict(NETS[0], masquerade=False)]
    assert "10.1.0.0/16 oifname !=" not in nft.render("ketch", nets, [])


def test_resolv_conf_default_bridge_drops_loopback_servers():
    host = {"nameservers": ["127.0.0.53"], "search": ["example.org"], "options": ["edns0"]}
    text = files.resolv_conf(False, host=host)
    assert "127.0.0.53" not in text
    assert "nameserver 8.8.8.8" in text and "search example.org" in text
    host = {"nameservers": ["127.0.0.53", "10.0.0.2"], "search": [], "options": []}
    assert files.resolv_conf(False, host=host) == "nameserver 10.0.0.2\n"
    assert "nameserver 1.1.1.1" in files.resolv_conf(False, dns=["1.1.1.1"], host=host)


def test_resolv_conf_user_network_uses_embedded_server():
    host = {"nameservers": ["10.0.0.2"], "search": [], "options": []}
    text = files.resolv_conf(True, host=host, search=["corp"])
    assert text == "search corp\nnameserver 127.0.0.11\noptions ndots:0\n"
    assert files.upstreams(None, host) == ["10.0.0.2"]
    assert files.upstreams(["127.0.0.1"], host) == ["127.0.0.1"]


def test_host_resolv_parses(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# c\nnameserver 10.0.0.2\nsearch a b\noptions ndots:2 # x\n")
    assert files.host_resolv(str(f)) == {"nameservers": ["10.0.0.2"], "search": ["a", "b"],
                                         "options": ["ndots:2"]}


def test_hosts_file():
    text = files.hosts("web", ["10.1.0.2"], [("db", "10.9.0.1")])
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert "10.9.0.1\tdb\n" in text and text.endswith("10.1.0.2\tweb\n")


def test_write_in_place_keeps_inode(tmp_path):
    f = tmp_path / "hosts"
    f.write_text("old old old\n")
    ino = f.stat().st_ino
    files.write_in_place(str(f), "new\n")
    assert f.read_text() == "new\n" and f.stat().st_ino == ino


def _query(name: str, qtype: int) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + dns.encode_name(name) + \
        struct.pack("!HH", qtype, 1)


def _names(tmp_path, table: dict) -> dns.Names:
    nf = tmp_path / "n.json"
    nf.write_text(json.dumps(table))
    cf = tmp_path / "c.json"
    cf.write_text(json.dumps({"names": [str(nf)], "upstream": []}))
    return dns.Names(str(cf))


def test_dns_answers_names_and_aliases(tmp_path):
    names = _names(tmp_path, {"web": ["10.1.0.2"], "alias": ["10.1.0.2"]})
    reply = dns.handle(names, _query("Web", dns.QTYPE_A))
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert (qid, flags & 0x8000, flags & 0xF, qd, an) == (0x1234, 0x8000, 0, 1, 1)
    assert reply.endswith(socket.inet_aton("10.1.0.2"))
    reply = dns.handle(names, _query("2.0.1.10.in-addr.arpa", dns.QTYPE_PTR))
    assert dns.encode_name("alias") in reply
    reply = dns.handle(names, _query("web", dns.QTYPE_AAAA))
    assert struct.unpack("!H", reply[6:8])[0] == 0 and reply[3] & 0xF == 0


def test_dns_unknown_name_without_upstream_is_servfail(tmp_path):
    reply = dns.handle(_names(tmp_path, {}), _query("example.org", dns.QTYPE_A))
    assert reply[3] & 0xF == 2


def test_dns_reloads_when_names_change(tmp_path):
    names = _names(tmp_path, {"a": ["10.0.0.2"]})
    assert names.answer("a", dns.QTYPE_A)
    import os
    import time

    (tmp_path / "n.json").write_text(json.dumps({"b": ["10.0.0.3"]}))
    os.utime(tmp_path / "n.json", ns=(time.time_ns() + 10**9,) * 2)
    assert names.answer("a", dns.QTYPE_A) is None
    assert names.answer("b", dns.QTYPE_A) == [(dns.QTYPE_A, socket.inet_aton("10.0.0.3"))]


def test_dns_rejects_garbage():
    assert dns.handle(dns.Names("/nonexistent"), b"\x00\x01") is None
