"""`ketch ps|images|run|create ...` without click: routing, errors, and one declaration.

The hot commands are parsed by cli/argv.py; the click command built from the
same declaration (for --help and click groups) must accept the same argv and
pass the same values, or the two paths would drift apart.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from ketch.cli import argv, main

REGISTRIES = ("ketch.cli.container", "ketch.cli.container_run", "ketch.cli.image")


def _all_commands():
    for module in REGISTRIES:
        yield from importlib.import_module(module).FAST.values()


def _sample_argv(cmd: argv.Command) -> list[str]:
    """Every option of cmd once (multiple ones twice), then its positionals."""
    words: list[str] = []
    for opt in cmd.options:
        flag = opt.decls[-1]
        if opt.is_flag:
            words.append(flag)
            continue
        value = "3" if opt.type is int else "false" if opt.type is bool else \
            opt.choices[-1] if opt.choices else "v"
        words += [flag, value] * (2 if opt.multiple else 1)
    for i, arg in enumerate(cmd.arguments):
        words += [f"a{i}", f"b{i}"] if arg.nargs == -1 else [f"a{i}"]
    return words


@pytest.mark.parametrize("cmd", list(_all_commands()), ids=lambda c: c.name)
def test_click_form_parses_the_same_argv_to_the_same_values(cmd):
    for words in ([], _sample_argv(cmd)):
        try:
            ours = argv.parse(cmd, words)
        except argv.UsageError:
            assert not words   # only the empty argv may lack required positionals
            continue
        ctx = cmd.click().make_context(cmd.name, list(words))
        assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in ctx.params.items()} \
            == ours


def test_every_fast_route_names_a_declared_command_that_click_also_has():
    import click

    cli = main._build_cli()
    for path, target in main.FAST.items():
        module, _, name = target.partition(":")
        cmd = importlib.import_module(module).FAST[name]
        assert path.split()[-1] in (name, "ls", "list", "rm", "remove"), (path, cmd.name)
        # `--help` falls back to click: the same words must name a command there.
        ctx = click.Context(cli)
        found = cli
        for word in path.split():
            found = found.get_command(ctx, word)
            assert found is not None, path


def _ketch(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`ketch ARGS` in a fresh interpreter; the last stdout line says if click was loaded."""
    code = ("import sys\nfrom ketch.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    rc = e.code\n"
            "print(); print(json.dumps(['click' in sys.modules, rc]))")
    env = dict(os.environ, KETCH_ROOT=str(tmp_path / "root"), KETCH_RUNROOT=str(tmp_path / "run"))
    return subprocess.run([sys.executable, "-c", "import json\n" + code, *args],
                          capture_output=True, text=True, env=env, timeout=60)


def _result(proc) -> tuple[bool, int]:
    return tuple(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["images"], ["image", "ls", "-q"],
                                  ["ps", "-a"], ["container", "ls"], ["-D", "images"]])
def test_hot_commands_never_import_click(tmp_path, args):
    proc = _ketch(tmp_path, *args)
    assert _result(proc) == (False, 0), proc.stderr


def test_create_validates_and_reaches_the_engine_without_click(tmp_path):
    bad = _ketch(tmp_path, "create", "--memory", "12q", "busybox")
    assert _result(bad) == (False, 125) and "12q" in bad.stderr
    missing = _ketch(tmp_path, "create", "--pull", "never", "--network", "none", "no-such:1")
    assert _result(missing)[0] is False and _result(missing)[1] == 125
    assert "no-such" in missing.stderr and "Traceback" not in missing.stderr


def test_bad_flags_print_dockers_two_lines_and_exit_125(tmp_path):
    proc = _ketch(tmp_path, "image", "ls", "-qz")
    assert _result(proc) == (False, 125)
    assert proc.stderr == "unknown shorthand flag: 'z' in -qz\nSee 'ketch image ls --help'.\n"
    proc = _ketch(tmp_path, "ps", "extra")
    assert _result(proc) == (False, 125)
    assert proc.stderr.startswith('"ketch ps" accepts no arguments.\nSee \'ketch ps --help\'.'
                                  "\n\nUsage:  ketch ps [OPTIONS]\n")


def test_click_commands_report_unknown_flags_in_the_same_words(tmp_path):
    proc = _ketch(tmp_path, "volume", "ls", "--xyz")
    assert _result(proc) == (True, 125)
    assert proc.stderr == "unknown flag: --xyz\nSee 'ketch volume ls --help'.\n"


def test_help_of_a_fast_command_is_clicks_and_lists_every_flag(tmp_path):
    proc = _ketch(tmp_path, "run", "--help")
    assert _result(proc) == (True, 0)
    assert proc.stdout.startswith("Usage: ketch run [OPTIONS] IMAGE [COMMAND]...")
    for opt in importlib.import_module("ketch.cli.container_run").FAST["run"].options:
        assert opt.decls[-1] in proc.stdout, opt.decls


def test_engine_errors_keep_their_exit_codes(tmp_path):
    # `rm` is one of Docker's commands that exit 1 on an engine error; images keeps 125.
    rm = _ketch(tmp_path, "rm", "nope")
    assert _result(rm) == (False, 1) and "nope" in rm.stderr
    flt = _ketch(tmp_path, "images", "--filter", "bogus=1")
    assert _result(flt) == (False, 125) and flt.stderr.startswith("ketch: ")


@pytest.mark.parametrize("columns", ["200", "80", "61", "54", "30"])
def test_top_level_help_is_clicks_text(columns, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", columns)
    ours = main._top_help()
    with pytest.raises(SystemExit):
        main._build_cli().main(["--help"], prog_name="ketch")
    theirs = capsys.readouterr().out
    assert ours == theirs or (ours is None and int(columns) < 54)


def test_default_tables_skip_the_template_engine_but_print_the_same():
    from ketch.cli import _format
    from ketch.cli.container import PS_DEFAULT, PS_FIELDS, PS_HEADERS
    rows = [{"ID": "abc", "Image": "busybox", "Command": '"sh -c …"', "RunningFor": "1 hour ago",
             "Status": "Up 1 hour", "Ports": "", "Names": "web", "Size": "0B", "Flag": True},
            {"ID": "def", "Image": "x", "Command": '""', "RunningFor": "2 days ago",
             "Status": "Exited (0)", "Ports": "0.0.0.0:80->80/tcp", "Names": None}]
    assert _format.fields_table(rows, PS_FIELDS, PS_HEADERS) == \
        _format.format_items(rows, None, PS_HEADERS, PS_DEFAULT)
    assert _format.fields_table(rows, PS_FIELDS + ["Size"], PS_HEADERS) == \
        _format.format_items(rows, None, PS_HEADERS, PS_DEFAULT + "\t{{.Size}}")
