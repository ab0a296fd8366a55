"""The engine's records (oci/record.py underneath; its generic behaviour is
tested in tests/unit/image/test_image_records.py): options through JSON, and
fields inherited by a subclass."""

from __future__ import annotations

import json

from ketch.engine import options as o
from ketch.oci.record import Record


def test_subclass_fields_follow_the_base_fields():
    class Point(Record):
        x: int
        y: int = 0

    class Point3(Point):
        z: int = 0

    assert Point3._fields == ("x", "y", "z")
    assert Point3(1, z=3) == Point3(x=1, y=0, z=3)


def test_create_options_round_trip_through_json():
    opts = o.CreateOptions(image="busybox", command=["true"], ulimits={"nofile": (10, 20)},
                           mounts=[o.parse_volume("/src:/dst:ro"), o.parse_tmpfs("/t:size=1m")])
    data = json.loads(json.dumps(opts.to_json()))
    assert data["mounts"][0] == {"type": "bind", "target": "/dst", "source": "/src",
                                 "readonly": True, "options": []}
    back = o.CreateOptions.from_json({**data, "no_longer_known": 1})
    assert back == opts and isinstance(back.mounts[0], o.Mount)
    assert back.ulimits == {"nofile": (10, 20)}
