"""Capability names: the table, parsing, and what is skipped with a warning."""

from __future__ import annotations

import pytest

from ketch.errors import InvalidArgument
from ketch.runtime import caps


def test_table_matches_linux_numbers():
    assert len(caps.CAPS) == 41
    assert caps.CAPS["CAP_CHOWN"] == 0
    assert caps.CAPS["CAP_NET_ADMIN"] == 12
    assert caps.CAPS["CAP_SYS_ADMIN"] == 21
    assert caps.CAPS["CAP_SYS_RESOURCE"] == 24
    assert caps.CAPS["CAP_AUDIT_READ"] == 37
    assert caps.CAPS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.NAMES[caps.CAPS["CAP_BPF"]] == "CAP_BPF"


def test_unknown_name_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(caps, "own_bounding", lambda: (1 << 41) - 1)
    with pytest.raises(InvalidArgument, match="unknown capability 'CAP_TEST'"):
        caps.parse(["CAP_CHOWN", "CAP_TEST"])
    with pytest.raises(InvalidArgument, match=r"process.capabilities.bounding: unknown capability"):
        caps.parse_spec({"bounding": ["CAP_KILL", "CAP_TEST"]})
    with pytest.raises(InvalidArgument, match="must be a list"):
        caps.parse_spec({"effective": "CAP_KILL"})


def test_names_are_case_insensitive(monkeypatch):
    monkeypatch.setattr(caps, "own_bounding", lambda: (1 << 41) - 1)
    assert caps.parse(["cap_kill", "CAP_Chown"]) == {5, 0}


def test_caps_the_kernel_lacks_are_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 37)  # a kernel before CAP_PERFMON
    monkeypatch.setattr(caps, "own_bounding", lambda: (1 << 38) - 1)
    warned: list[str] = []
    assert caps.parse(["CAP_BPF", "CAP_KILL"], warn=warned.append) == {5}
    assert warned == ["process.capabilities: capability CAP_BPF is not supported by this kernel, ignored"]


def test_caps_outside_our_bounding_set_are_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 40)
    all_but_resource = ((1 << 41) - 1) & ~(1 << caps.CAPS["CAP_SYS_RESOURCE"])
    monkeypatch.setattr(caps, "own_bounding", lambda: all_but_resource)
    warned: list[str] = []
    sets = caps.parse_spec({"bounding": list(caps.CAPS), "effective": ["CAP_SYS_RESOURCE"]},
                           warn=warned.append)
    assert len(sets["bounding"]) == 40 and caps.CAPS["CAP_SYS_RESOURCE"] not in sets["bounding"]
    assert sets["effective"] == set() and sets["ambient"] == set()
    assert len(warned) == 2 and all("CAP_SYS_RESOURCE" in w for w in warned)


def test_mask_and_names_round_trip():
    bits = caps.mask({0, 5, 21, 40})
    assert bits == (1 << 0) | (1 << 5) | (1 << 21) | (1 << 40)
    assert caps.names(bits) == ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"]


def test_current_reads_status():
    now = caps.current()
    assert set(now) == {"inheritable", "permitted", "effective", "bounding", "ambient"}
    assert now["effective"] & ~now["permitted"] == 0  # effective is always a subset of permitted


class Recorder:
    """A stand-in for ketch._sys.caps that records calls (youki's recording syscall layer)."""

    def __init__(self, bounding: set[int]):
        self.bounding = set(bounding)
        self.calls: list[tuple] = []

    def bounding_has(self, cap):
        return cap in self.bounding

    def bounding_drop(self, cap):
        self.calls.append(("drop", cap))
        self.bounding.discard(cap)

    def capset(self, e, p, i):
        self.calls.append(("capset", e, p, i))

    def ambient_clear_all(self):
        self.calls.append(("ambient_clear",))

    def ambient_raise(self, cap):
        self.calls.append(("ambient_raise", cap))


def test_drop_bounding_drops_only_what_is_held_and_not_kept(monkeypatch):
    rec = Recorder({0, 5, 21, 24})
    monkeypatch.setattr(caps, "_sys", rec)
    monkeypatch.setattr(caps, "_last_cap", 40)
    caps.drop_bounding({0, 5})
    assert rec.calls == [("drop", 21), ("drop", 24)]


def test_set_sets_and_ambient_order(monkeypatch):
    rec = Recorder(set())
    monkeypatch.setattr(caps, "_sys", rec)
    caps.set_sets({0, 5}, {0, 5, 10}, {10})
    caps.set_ambient({10, 12})
    assert rec.calls == [("capset", 0b100001, 0b10000100001, 0b10000000000),
                         ("ambient_clear",), ("ambient_raise", 10), ("ambient_raise", 12)]


def test_bounding_drop_failure_names_the_capability(monkeypatch):
    rec = Recorder({21})

    def refuse(cap):
        raise OSError(1, "Operation not permitted")

    rec.bounding_drop = refuse
    monkeypatch.setattr(caps, "_sys", rec)
    monkeypatch.setattr(caps, "_last_cap", 40)
    from ketch.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="drop CAP_SYS_ADMIN from the bounding set"):
        caps.drop_bounding(set())


def test_parse_spec_warning_names_each_capability_once(monkeypatch):
    monkeypatch.setattr(caps, "_last_cap", 40)
    all_but_resource = ((1 << 41) - 1) & ~(1 << caps.CAPS["CAP_SYS_RESOURCE"])
    monkeypatch.setattr(caps, "own_bounding", lambda: all_but_resource)
    warned: list[str] = []
    spec = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in ("bounding", "effective", "ambient")}
    sets = caps.parse_spec_warning(spec, warned.append)
    assert sets["bounding"] == sets["ambient"] == {caps.CAPS["CAP_KILL"]}
    assert warned == ["process.capabilities (bounding, effective, ambient): capability "
                      "CAP_SYS_RESOURCE is not in the runtime's bounding set, ignored"]
