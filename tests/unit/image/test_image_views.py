"""Docker's views of images: `images` rows and filters, history, inspect, CLI tables."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ketch.errors import InvalidArgument
from ketch.image import importer, views
from tests.unit.image.conftest import layer_tar


def _img(store, name, created, labels=None, files=None):
    rec = importer.import_tar(store, layer_tar(files or {name.replace(":", "_"): b"x"}), "-",
                              name, [f"LABEL {k}={v}" for k, v in (labels or {}).items()])
    cfg = dict(rec.config, created=created)
    store.conn.execute("UPDATE images SET created=?, config=? WHERE id=?",
                       (created, json.dumps(cfg), rec.id))
    return store.get(rec.id)


def test_parse_time_handles_fractions_and_offsets():
    assert views.parse_time("1970-01-01T00:00:10Z") == 10
    assert views.parse_time("1970-01-01T01:00:10.5+01:00") == 10.5
    assert views.parse_time("2024-01-01T00:00:00.123456789Z") == pytest.approx(1704067200.123456789)
    assert views.parse_time("garbage") == 0
    assert views.docker_time(0) == "1970-01-01 00:00:00 +0000 UTC"


def test_rows_filters(store):
    old = _img(store, "old:1", "2020-01-01T00:00:00Z", {"team": "a"})
    mid = _img(store, "mid:1", "2021-01-01T00:00:00Z", {"team": "b"})
    new = _img(store, "new:1", "2022-01-01T00:00:00Z")
    store.untag("new:1")

    def repos(*f):
        return [r["Repository"] for r in views.rows(store, filters=views.parse_filters(list(f)))]

    assert repos() == ["<none>", "mid", "old"]        # newest first, dangling shown
    assert repos("dangling=true") == ["<none>"]
    assert repos("dangling=false") == ["mid", "old"]
    assert repos("label=team") == ["mid", "old"] and repos("label=team=a") == ["old"]
    assert repos("reference=m*") == ["mid"] and repos("reference=docker.io/library/old") == ["old"]
    assert repos("before=mid:1") == ["old"] and repos("since=old:1") == ["<none>", "mid"]
    row = views.rows(store)[0]
    assert row["ID"] == new.id and row["Tag"] == "<none>" and row["Size"] == new.size
    assert {old.id, mid.id} < {r["ID"] for r in views.rows(store)}
    with pytest.raises(InvalidArgument, match="invalid filter"):
        views.parse_filters(["colour=red"])


def test_history_and_inspect_shapes(store):
    base = _img(store, "base:1", "2020-01-01T00:00:00Z")
    child = importer.create_image(store, base, None, {"Cmd": ["true"]}, ["child:1"],
                                  {"created_by": "/bin/sh -c #(nop) CMD [\"true\"]",
                                   "created": "2021-01-01T00:00:00Z"})
    hist = views.history(child)
    assert [h["ID"] for h in hist] == [child.id, "<missing>"]
    assert hist[0]["Size"] == 0 and hist[1]["Size"] == base.size
    assert hist[0]["CreatedBy"].endswith('CMD ["true"]')
    insp = views.docker_inspect(store, store.resolve("child:1"))
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Config",
                "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata"):
        assert key in insp, key
    assert insp["Parent"] == base.id and insp["RootFS"]["Layers"] == base.config["rootfs"]["diff_ids"]
    assert insp["Config"]["Cmd"] == ["true"] and insp["Config"]["Tty"] is False


def test_cli_images_table_and_quiet(store, monkeypatch):
    monkeypatch.setenv("KETCH_ROOT", str(store.root))
    _img(store, "web:1", "2020-01-01T00:00:00Z")
    _img(store, "localhost:5000/team/api:2", "2021-01-01T00:00:00Z")
    from ketch.cli.image import images

    out = CliRunner().invoke(images, []).output.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["localhost:5000/team/api", "2"]
    assert out[2].split()[:2] == ["web", "1"] and "years ago" in out[2]
    ids = CliRunner().invoke(images, ["-q"]).output.split()
    assert len(ids) == 2 and all(len(i) == 12 for i in ids)
    full = CliRunner().invoke(images, ["-q", "--no-trunc"]).output.split()
    assert all(i.startswith("sha256:") and i[7:19] in ids for i in full)
    js = [json.loads(line) for line in CliRunner().invoke(images, ["--format", "json"]).output.splitlines()]
    assert js[1]["Repository"] == "web" and js[1]["CreatedAt"].startswith("2020-01-01 00:00:00")
    tmpl = CliRunner().invoke(images, ["--format", "{{.Repository}}:{{.Tag}}"]).output
    assert tmpl == "localhost:5000/team/api:2\nweb:1\n"


def test_digest_only_image_shows_its_repository(store):
    rec = _img(store, "x:1", "2020-01-01T00:00:00Z")
    store.untag("x:1")
    dig = "sha256:" + "b" * 64
    store.conn.execute("INSERT INTO repo_digests VALUES (?,?,?)",
                       ("docker.io/library/busybox", dig, rec.id))
    rows = views.rows(store)
    assert [(r["Repository"], r["Tag"], r["Digest"]) for r in rows] == [("busybox", "<none>", dig)]
    flt = views.parse_filters
    assert len(views.rows(store, filters=flt(["reference=busybox"]))) == 1
    assert len(views.rows(store, filters=flt(["dangling=true"]))) == 1
