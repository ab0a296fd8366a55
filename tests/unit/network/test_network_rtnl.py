"""ketch.network.rtnl: attribute encoding, and real requests against the host's links."""

from __future__ import annotations

import socket

import pytest

from ketch.network import rtnl


def test_attr_pads_to_four_bytes_and_parses_back():
    blob = rtnl.attr(3, b"eth0\0") + rtnl.attr(4, b"\x05\xdc\0\0")
    assert len(rtnl.attr(3, b"eth0\0")) == 12  # 4 header + 5 data + 3 pad
    assert rtnl.parse_attrs(blob) == {3: b"eth0\0", 4: b"\x05\xdc\0\0"}


def test_parse_attrs_drops_nested_flag_and_stops_on_garbage():
    nested = rtnl.attr(18 | rtnl.NLA_F_NESTED, rtnl.attr(1, b"veth\0"))
    assert rtnl.parse_attrs(nested + b"\x01\x00") == {18: rtnl.attr(1, b"veth\0")}


def test_loopback_lookup_dump_and_addresses():
    with rtnl.Rtnl() as nl:
        assert nl.index("lo") == socket.if_nametoindex("lo")
        assert nl.index("no-such-link0") is None
        assert ("lo", None) in nl.links()
        assert ("127.0.0.1", 8) in nl.addrs(nl.index("lo"))


def test_kernel_errors_come_back_as_oserror():
    with rtnl.Rtnl() as nl, pytest.raises(OSError) as err:
        nl.del_link(2**31 - 1)  # no such index
    assert err.value.errno == 19  # ENODEV
