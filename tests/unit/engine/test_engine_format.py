"""The CLI's --format templates and tables (cli/_format.py)."""

from __future__ import annotations

import pytest

from ketch.cli import _format
from ketch.errors import InvalidArgument

DATA = {"Id": "abc", "State": {"Status": "running", "Running": True},
        "Config": {"Labels": {"a": "1"}, "Cmd": ["sh", "-c"]}, "Name": "/web"}


def test_field_and_nested_field():
    assert _format.render("{{.State.Status}}", DATA) == "running"
    assert _format.render("{{.Name}} {{.Id}}", DATA) == "/web abc"
    assert _format.render("{{.State.Running}}", DATA) == "true"


def test_json_index_join_upper():
    assert _format.render("{{json .Config.Labels}}", DATA) == '{"a":"1"}'
    assert _format.render('{{index .Config.Labels "a"}}', DATA) == "1"
    assert _format.render('{{join .Config.Cmd ","}}', DATA) == "sh,-c"
    assert _format.render("{{upper .State.Status}}", DATA) == "RUNNING"


def test_missing_key_is_no_value_and_unknown_function_is_an_error():
    assert _format.render("{{.Nope}}", DATA) == "<no value>"
    with pytest.raises(InvalidArgument, match="frobnicate"):
        _format.render("{{frobnicate .Id}}", DATA)


def test_table_directive_has_header_and_aligned_columns():
    out = _format.format_items(
        [{"ID": "a", "Names": "long-name"}, {"ID": "bbbb", "Names": "x"}],
        "table {{.ID}}\\t{{.Names}}", {"ID": "CONTAINER ID", "Names": "NAMES"}, "")
    lines = out.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "NAMES"]
    assert lines[1].index("long-name") == lines[0].index("NAMES")
    assert lines[2].startswith("bbbb")


def test_human_size_and_duration():
    assert _format.human_size(0) == "0B"
    assert _format.human_size(1234567) == "1.235MB"
    assert _format.human_duration(0.2) == "Less than a second"
    assert _format.human_duration(300) == "5 minutes"
