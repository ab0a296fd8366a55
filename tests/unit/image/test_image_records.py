"""Plain records instead of dataclasses on the listing path: oci/record.py, ImageRecord,
Reference, the store's GC lock, and what importing the listing modules pulls in."""

from __future__ import annotations

import copy
import fcntl
import os
import pickle
import subprocess
import sys

import pytest

from ketch.image import views
from ketch.image.schema import ImageRecord
from ketch.oci.record import Factory, Record
from ketch.oci.reference import Reference, parse


class Layer(Record):
    digest: str
    size: int = 0


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = Factory(list)
    layers: list[Layer] = Factory(list)


def test_record_construction_defaults_and_fresh_mutables():
    p = Point(1)
    assert (p.x, p.y, p.tags, p.layers) == (1, 0, [], [])
    assert Point(1).tags is not Point(1).tags
    assert Point(1, 2, ["a"]) == Point(x=1, y=2, tags=["a"])
    assert Point(1) != Point(2) and Point(1) != Layer("1")
    assert repr(Point(1, tags=["a"])) == "Point(x=1, y=0, tags=['a'], layers=[])"
    assert not hasattr(Point, "tags")   # the class holds no shared list
    with pytest.raises(TypeError, match="unhashable"):
        hash(Point(1))


@pytest.mark.parametrize("call, message", [
    (lambda: Point(), "missing required argument: 'x'"),
    (lambda: Point(1, x=2), "multiple values for argument 'x'"),
    (lambda: Point(1, w=2), "unexpected keyword argument 'w'"),
    (lambda: Point(1, 2, [], [], 5), "at most 4 positional"),
])
def test_record_bad_construction_is_a_type_error(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_record_as_dict_is_deep_and_copies():
    p = Point(1, tags=["a"], layers=[Layer("sha256:x", 3)])
    d = p.as_dict()
    assert d == {"x": 1, "y": 0, "tags": ["a"], "layers": [{"digest": "sha256:x", "size": 3}]}
    d["tags"].append("b")
    assert p.tags == ["a"]


def test_image_record_fields_and_defaults():
    rec = ImageRecord("sha256:1", {"os": "linux"}, ["a:1"], [], "", 5, None)
    assert ImageRecord._fields == ("id", "config", "repo_tags", "repo_digests", "created",
                                   "size", "top_chain_id", "manifest_digest",
                                   "manifest_media_type", "layers", "chain")
    assert (rec.manifest_digest, rec.layers, rec.chain) == ("", [], [])
    other = ImageRecord(id="sha256:1", config={"os": "linux"}, repo_tags=["a:1"],
                        repo_digests=[], created="", size=5, top_chain_id=None)
    assert rec == other and rec.layers is not other.layers
    other.size = 6
    assert rec != other


def test_reference_is_immutable_hashable_and_compares_by_parts():
    ref = parse("busybox")
    assert ref == Reference("docker.io", "library/busybox", "latest")
    assert ref != Reference("docker.io", "library/busybox", "1")
    assert ref != ("docker.io", "library/busybox", "latest", None)
    assert len({ref, parse("busybox:latest"), parse("docker.io/library/busybox")}) == 1
    assert repr(ref) == ("Reference(domain='docker.io', path='library/busybox', "
                         "tag='latest', digest=None)")
    with pytest.raises(AttributeError, match="immutable"):
        ref.tag = "2"
    with pytest.raises(AttributeError, match="immutable"):
        del ref.tag
    with pytest.raises(AttributeError):
        ref.other = 1
    assert ref.tag == "latest"
    assert copy.copy(ref) == ref and copy.deepcopy(ref) == ref
    assert pickle.loads(pickle.dumps(ref)) == ref
    assert ref.with_tag("2") == Reference("docker.io", "library/busybox", "2")


def _try_exclusive(path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_gc_lock_shared_by_default_exclusive_on_request(store):
    lock_file = store.root / "gc.lock"
    with store.lock():
        assert not _try_exclusive(lock_file)       # GC would wait for the writer
        with store.lock():                         # a second writer does not
            pass
    assert _try_exclusive(lock_file)               # released on exit
    with store.lock(fcntl.LOCK_EX):
        fd = os.open(lock_file, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_gc_lock_released_when_the_block_raises(store):
    with pytest.raises(RuntimeError), store.lock(fcntl.LOCK_EX):
        raise RuntimeError("boom")
    assert _try_exclusive(store.root / "gc.lock")


def test_parse_time_of_an_impossible_date_is_zero():
    assert views.parse_time("2020-13-01T00:00:00Z") == 0
    assert views.parse_time("0000-01-01T00:00:00Z") == 0
    assert views.parse_time("2020-02-29T12:00:00-01:30") == 1582983000   # 13:30 UTC


def test_listing_modules_do_not_import_costly_stdlib_modules(tmp_path):
    """`ketch images` (and `ketch run`'s image and snapshot steps) stay off dataclasses,
    typing, calendar, contextlib and ctypes: together ~20 ms per command here."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import ketch.image.store, ketch.image.views, ketch.content.store\n"
        "from ketch.snapshot.base import overlay_usable, pick\n"
        f"overlay_usable(Path({str(tmp_path)!r}))\n"
        f"pick(Path({str(tmp_path)!r}))\n"
        "print(' '.join(m for m in ('dataclasses', 'typing', 'inspect', 'calendar',\n"
        "                           'contextlib', 'ctypes') if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "KETCH_SNAPSHOTTER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == ""
