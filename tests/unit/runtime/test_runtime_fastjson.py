"""The start path's JSON agrees with the json module."""

from __future__ import annotations

import json

import pytest

from ketch.oci.runtime_spec import default_spec
from ketch.runtime import fastjson

SAMPLES = [default_spec(), {"a": [1, -2, 3.5, True, False, None, "é\n\"x\""], "b": {}},
           [], "", 0, {"nested": [[{"k": "v"}]]}]


@pytest.mark.parametrize("obj", SAMPLES)
def test_round_trip_matches_json(obj):
    text = fastjson.dumps(obj)
    assert json.loads(text) == obj
    assert fastjson.loads(text) == obj
    assert fastjson.loads(json.dumps(obj, indent="\t")) == obj


@pytest.mark.parametrize("bad", ["{", "[1,]", "{} x", "", "nul"])
def test_invalid_json_is_a_value_error(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


@pytest.mark.parametrize("obj", SAMPLES)
def test_dumps_is_json_dumps(obj):
    assert fastjson.dumps(obj) == json.dumps(obj)


def test_dumps_sets_as_sorted_lists_and_refuses_the_unknown():
    assert fastjson.dumps({"caps": {3, 1, 2}}) == '{"caps": [1, 2, 3]}'
    with pytest.raises(TypeError, match="object"):
        fastjson.dumps({"x": object()})
