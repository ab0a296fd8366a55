"""Reading json-file logs (engine/logs.py): rotated files in order, tails, times, bad lines."""

from __future__ import annotations

import json

from ketch.engine import logs


def _write(path, records):
    with open(path, "w") as f:
        for t, stream, text in records:
            f.write(json.dumps({"log": text, "stream": stream, "time": t}) + "\n")


def test_rotated_files_are_read_oldest_first_and_tail_spans_them(tmp_path):
    log = tmp_path / "c-json.log"
    _write(f"{log}.2", [("2026-11-26T10:00:00.000000001Z", "stdout", "one\n")])
    _write(f"{log}.1", [("2026-11-26T10:00:01.000000000Z", "stdout", "two\n"),
                        ("2026-11-26T10:00:02.000000000Z", "stderr", "three\n")])
    _write(log, [("2026-11-26T10:00:03.000000000Z", "stdout", "fo"),
                 ("2026-11-26T10:00:03.500000000Z", "stdout", "ur\n")])
    assert logs.rotated(str(log)) == [f"{log}.2", f"{log}.1"]
    got = list(logs.read(str(log), None, follow=False))
    assert [(s, d) for _, s, d in got] == [("stdout", b"one\n"), ("stdout", b"two\n"),
                                           ("stderr", b"three\n"), ("stdout", b"fo"),
                                           ("stdout", b"ur\n")]
    tail = list(logs.read(str(log), None, follow=False, tail=3))
    assert [d for _, _, d in tail] == [b"three\n", b"fo", b"ur\n"]
    assert list(logs.read(str(log), None, follow=False, tail=0)) == []


def test_since_until_use_the_nanosecond_times(tmp_path):
    log = tmp_path / "c-json.log"
    _write(log, [("2026-11-26T10:00:00.250000000Z", "stdout", "a\n"),
                 ("2026-11-26T10:00:01.750000000Z", "stdout", "b\n"),
                 ("2026-11-26T10:00:03.000000000Z", "stdout", "c\n")])
    since = logs.since_value("2026-11-26T10:00:01Z")
    until = logs.since_value("2026-11-26T10:00:02Z")
    got = list(logs.read(str(log), None, follow=False, since=since, until=until))
    assert [d for _, _, d in got] == [b"b\n"]


def test_a_cut_or_foreign_line_is_skipped_not_fatal(tmp_path):
    log = tmp_path / "c-json.log"
    log.write_text('{"log":"ok\\n","stream":"stdout","time":"2026-11-26T10:00:00.000000000Z"}\n'
                   '{"log":"cut sho\n'
                   '2026-11-26T10:00:00.000000000+00:00 stdout F k8s-file line\n'
                   '[1, 2]\n')
    got = list(logs.read(str(log), None, follow=False))
    assert [d for _, _, d in got] == [b"ok\n"]


def test_no_log_file_yields_nothing(tmp_path):
    assert list(logs.read(str(tmp_path / "missing-json.log"), None, follow=False)) == []
