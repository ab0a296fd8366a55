"""config.json checking: each broken field gives one error naming it."""

from __future__ import annotations

import copy

import pytest

from ketch.errors import InvalidArgument
from ketch.oci import runtime_spec
from ketch.runtime import cli, container


def good() -> dict:
    spec = runtime_spec.default_spec()
    spec["process"]["terminal"] = False
    return spec


def test_default_spec_passes():
    runtime_spec.check(good())
    runtime_spec.check(runtime_spec.default_spec(rootless=True))


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s["linux"]["namespaces"].append({"type": "foo"}), "linux.namespaces[6].type"),
    (lambda s: s["linux"]["namespaces"].append({"type": "pid"}), "duplicate namespace"),
    (lambda s: s.pop("process"), "process: required"),
    (lambda s: s["process"].update(cwd="tmp"), "process.cwd"),
    (lambda s: s["process"].update(args=[]), "process.args"),
    (lambda s: s["process"]["env"].append("NOEQUALS"), "process.env[2]"),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_FOO", "soft": 1, "hard": 1}),
     "process.rlimits[1].type"),
    (lambda s: s["process"]["rlimits"][0].update(soft=2048), "process.rlimits[0]"),
    (lambda s: s["process"].update(oomScoreAdj=5000), "process.oomScoreAdj"),
    (lambda s: s["process"]["user"].update(uid="root"), "process.user.uid"),
    (lambda s: s["mounts"].append({"destination": "rel"}), "mounts[7].destination"),
    (lambda s: s["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation"),
    (lambda s: s["linux"].update(sysctl={"vm.swappiness": "1"}), "linux.sysctl"),
    (lambda s: s["linux"].update(sysctl={"net.ipv4.ip_forward": "1"},
                                 namespaces=[{"type": "mount"}]), "network namespace"),
    (lambda s: s["linux"].update(devices=[{"path": "/dev/x", "type": "q"}]),
     "linux.devices[0].type"),
    (lambda s: s.update(hooks={"prestart": [{"path": "relative"}]}), "hooks.prestart[0].path"),
    (lambda s: s["linux"].update(namespaces=[{"type": "mount"}]), "hostname"),
    (lambda s: s["linux"]["namespaces"].append({"type": "net", "path": "x"}),
     "linux.namespaces[6].type"),
])
def test_bad_field_is_named(mutate, field):
    spec = copy.deepcopy(good())
    mutate(spec)
    with pytest.raises(InvalidArgument) as err:
        runtime_spec.check(spec)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_load_rejects_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(InvalidArgument, match="invalid JSON"):
        runtime_spec.load(str(tmp_path / "config.json"))


def test_cli_parser_go_style_flags():
    opts, pos = cli.parse(["--bundle=/b", "-pid-file", "/p", "--no-pivot", "id"],
                          cli.COMMANDS["create"], False)
    assert opts == {"bundle": "/b", "pid_file": "/p", "no_pivot": True}
    assert pos == ["id"]
    opts, pos = cli.parse(["-e", "A=1", "--env", "B=2", "-t", "c1", "sh", "-c", "x"],
                          cli.COMMANDS["exec"], True)
    assert opts == {"env": ["A=1", "B=2"], "tty": True}
    assert pos == ["c1", "sh", "-c", "x"]
    with pytest.raises(InvalidArgument, match="-bogus"):
        cli.parse(["--bogus"], cli.COMMANDS["create"], False)


@pytest.mark.parametrize("text, num", [("KILL", 9), ("SIGTERM", 15), ("9", 9), ("sigusr1", 10),
                                       ("RTMIN+2", 36)])
def test_signals(text, num):
    assert container.parse_signal(text) == num


def test_bad_signal():
    with pytest.raises(InvalidArgument, match="SIGFOO"):
        container.parse_signal("SIGFOO")


def test_systemd_cgroup_is_a_clear_error(capsys):
    assert cli.main(["--systemd-cgroup", "list"]) == 1
    assert "--systemd-cgroup is not supported" in capsys.readouterr().err


def test_spec_command_writes_a_valid_config_once(tmp_path, capsys):
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    written = runtime_spec.load(str(tmp_path / "config.json"))
    runtime_spec.check(written)
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_features_and_version(capsys):
    assert cli.main(["features"]) == 0
    import json
    feats = json.loads(capsys.readouterr().out)
    assert "user" in feats["linux"]["namespaces"] and "poststop" in feats["hooks"]
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ketch-runc version ")


def test_unknown_command_and_missing_id(capsys):
    assert cli.main(["frobnicate"]) == 1
    assert cli.main(["start"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["ketch-runc: no such command 'frobnicate'",
                   "ketch-runc: start: expected an ID, got none"]


def test_early_start_knows_which_global_flags_take_a_value():
    from ketch.runtime import create
    assert set(create.GLOBAL_VALUED) == {k for k, (_d, takes) in cli.GLOBAL.items() if takes}


@pytest.mark.parametrize("argv, want", [
    (["run", "c1"], True),
    (["--root", "/r", "run", "-b", "x", "c1"], True),
    (["--root=/r", "--log", "run", "run", "c1"], True),   # --log's value is not the command
    (["run", "-d", "c1"], False),
    (["run", "--detach=false", "c1"], True),
    (["create", "--bundle", "b", "c1"], False),
    (["create", "--console-socket", "/s", "c1"], None),
    (["run", "--preserve-fds=2", "c1"], None),
    (["run", "--help"], None),
    (["state", "c1"], None),
    (["--version"], None),
    ([], None),
])
def test_early_start_reads_create_and_run_command_lines(argv, want):
    from ketch.runtime import create
    assert create.early_console(argv) is want
