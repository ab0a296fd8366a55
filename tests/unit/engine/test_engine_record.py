"""engine/record.py: the plain data classes that replace @dataclass on the run path."""

from __future__ import annotations

import json

import pytest

from ketch.engine import options as o
from ketch.engine.record import Factory, Record


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = Factory(list)


class Point3(Point):
    z: int = 0


def test_construction_defaults_and_fresh_mutables():
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert Point(1).tags is not Point(1).tags
    assert Point(1, 2, ["a"]) == Point(x=1, y=2, tags=["a"])
    assert Point(1) != Point(2)
    assert Point3(1, z=3).z == 3 and Point3._fields == ("x", "y", "tags", "z")
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    assert not hasattr(Point, "tags")   # the class holds no shared list


@pytest.mark.parametrize("call, message", [
    (lambda: Point(), "missing required argument: 'x'"),
    (lambda: Point(1, x=2), "multiple values for argument 'x'"),
    (lambda: Point(1, w=2), "unexpected keyword argument 'w'"),
    (lambda: Point(1, 2, [], 4), "at most 3 positional"),
])
def test_bad_construction_is_a_type_error(call, message):
    with pytest.raises(TypeError, match=message):
        call()


def test_create_options_round_trip_through_json():
    opts = o.CreateOptions(image="busybox", command=["true"], ulimits={"nofile": (10, 20)},
                           mounts=[o.parse_volume("/src:/dst:ro"), o.parse_tmpfs("/t:size=1m")])
    data = json.loads(json.dumps(opts.to_json()))
    assert data["mounts"][0] == {"type": "bind", "target": "/dst", "source": "/src",
                                 "readonly": True, "options": []}
    back = o.CreateOptions.from_json({**data, "no_longer_known": 1})
    assert back == opts and isinstance(back.mounts[0], o.Mount)
    assert back.ulimits == {"nofile": (10, 20)}
