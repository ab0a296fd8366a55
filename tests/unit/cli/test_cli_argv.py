"""cli/argv.py: the click-free parser of the hot commands, against Docker's flag rules."""

from __future__ import annotations

import pytest

from ketch.cli import argv
from ketch.cli.container import FAST as CONTAINER
from ketch.cli.container_run import FAST as RUN
from ketch.cli.image import FAST as IMAGE

PS, IMAGES, RUN_CMD = CONTAINER["ps"], IMAGE["images"], RUN["run"]


def test_defaults_are_what_click_would_pass():
    kw = argv.parse(PS, [])
    assert kw == {"all_": False, "quiet": False, "latest": False, "last": -1, "size": False,
                  "no_trunc": False, "filters": (), "fmt": None}


@pytest.mark.parametrize("words", [["-aq"], ["-a", "-q"], ["--all", "--quiet"], ["-qa"],
                                   ["--all=true", "-q=1"]])
def test_bundles_and_spellings_of_bools(words):
    kw = argv.parse(PS, words)
    assert kw["all_"] is True and kw["quiet"] is True


@pytest.mark.parametrize("words", [["-n5"], ["-n=5"], ["-n", "5"], ["--last=5"], ["--last", "5"],
                                   ["-an5"], ["-an", "5"]])
def test_value_flags_take_the_rest_of_the_word_or_the_next(words):
    assert argv.parse(PS, words)["last"] == 5


def test_repeated_options_accumulate_in_order_and_false_turns_a_flag_off():
    kw = argv.parse(PS, ["-f", "status=exited", "--filter=name=a", "-fid=1", "-a", "--all=false"])
    assert kw["filters"] == ("status=exited", "name=a", "id=1") and kw["all_"] is False


def test_a_value_may_look_like_a_flag():
    assert argv.parse(PS, ["--format", "-q"])["fmt"] == "-q"
    assert argv.parse(PS, ["-n", "-1"])["last"] == -1


def test_images_takes_flags_after_its_argument_and_double_dash_ends_flags():
    kw = argv.parse(IMAGES, ["busybox", "-q"])
    assert kw["repository"] == "busybox" and kw["quiet"] is True
    kw = argv.parse(IMAGES, ["--", "-q"])
    assert kw["repository"] == "-q" and kw["quiet"] is False
    assert argv.parse(IMAGES, [])["repository"] is None


def test_run_flags_stop_at_the_image_the_rest_is_the_command():
    kw = argv.parse(RUN_CMD, ["-dit", "--rm", "-p8080:80", "-e", "A=1", "-eB=2", "--name=web",
                              "busybox", "ls", "-la", "--rm", "--", "x"])
    assert kw["detach"] and kw["interactive"] and kw["tty"] and kw["auto_remove"]
    assert kw["publish"] == ("8080:80",) and kw["env"] == ("A=1", "B=2") and kw["name"] == "web"
    assert kw["image"] == "busybox" and kw["command"] == ("ls", "-la", "--rm", "--", "x")
    kw = argv.parse(RUN_CMD, ["--", "busybox", "-x"])
    assert kw["image"] == "busybox" and kw["command"] == ("-x",)


def test_run_short_h_is_hostname_and_net_is_network():
    kw = argv.parse(RUN_CMD, ["-h", "box", "--net", "none", "busybox"])
    assert kw["hostname"] == "box" and kw["network"] == "none" and kw["command"] == ()
    with pytest.raises(argv.HelpRequested):
        argv.parse(RUN_CMD, ["--help"])
    with pytest.raises(argv.HelpRequested):
        argv.parse(PS, ["-ah"])   # -h is help where no option owns it


@pytest.mark.parametrize("cmd, words, message", [
    (PS, ["--xyz"], "unknown flag: --xyz"),
    (PS, ["--xyz=1"], "unknown flag: --xyz"),
    (PS, ["-az"], "unknown shorthand flag: 'z' in -az"),
    (PS, ["-n"], "flag needs an argument: 'n' in -n"),
    (PS, ["--format"], "flag needs an argument: --format"),
    (PS, ["-n", "x"], 'invalid argument "x" for "-n, --last" flag: strconv.ParseInt: '
                      'parsing "x": invalid syntax'),
    (PS, ["--all=maybe"], 'invalid argument "maybe" for "-a, --all" flag: strconv.ParseBool: '
                          'parsing "maybe": invalid syntax'),
    (RUN_CMD, ["--pull", "sometimes", "busybox"],
     'invalid argument "sometimes" for "--pull" flag: must be one of always, missing, never'),
    (PS, ["extra"], '"ketch ps" accepts no arguments.'),
    (IMAGES, ["a", "b"], '"ketch images" requires at most 1 argument.'),
    (RUN_CMD, ["-d"], '"ketch run" requires at least 1 argument.'),
    (IMAGE["tag"], ["a"], '"ketch tag" requires exactly 2 arguments.'),
])
def test_errors_in_dockers_words(cmd, words, message):
    with pytest.raises(argv.UsageError) as err:
        argv.parse(cmd, words)
    assert str(err.value) == message
    assert err.value.usage == message.startswith('"')


def test_messages_name_the_command_path():
    with pytest.raises(argv.UsageError, match='^"ketch image ls" requires at most 1'):
        argv.parse(IMAGES, ["a", "b"], "image ls")


def test_positionals_fill_required_then_optional_then_the_rest():
    imp = IMAGE["import"]
    assert argv.parse(imp, ["f.tar"])["repository"] is None
    kw = argv.parse(imp, ["f.tar", "repo:1", "-c", "CMD x"])
    assert (kw["source"], kw["repository"], kw["changes"]) == ("f.tar", "repo:1", ("CMD x",))
    assert argv.parse(CONTAINER["rm"], ["-f", "a", "b"])["containers"] == ("a", "b")


def test_a_declaration_builds_nothing_until_parsed():
    @argv.Commands().command("demo")
    @argv.option("-x", "--ex-tra", multiple=True)
    @argv.argument("name")
    def demo(ex_tra, name):
        """Demo."""
        return name, ex_tra

    assert [o.dest for o in demo.options] == ["ex_tra"] and demo.usage() == "[OPTIONS] NAME"
    assert demo(**argv.parse(demo, ["-x1", "n", "-x2"])) == ("n", ("1", "2"))


def test_a_bool_valued_option_takes_clicks_spellings():
    hist = IMAGE["history"]
    for word, want in (("false", False), ("no", False), ("0", False), ("True", True),
                       ("on", True)):
        assert argv.parse(hist, ["-H", word, "img"])["human"] is want
    with pytest.raises(argv.UsageError, match='invalid argument "maybe" for "-H, --human"'):
        argv.parse(hist, ["--human=maybe", "img"])


def test_container_commands_take_flags_after_names_like_docker():
    kw = argv.parse(CONTAINER["rm"], ["web", "-f", "db"])
    assert kw["force"] is True and kw["containers"] == ("web", "db")
    kw = argv.parse(CONTAINER["inspect"], ["web", "-f", "{{.Id}}"])
    assert kw["fmt"] == "{{.Id}}" and kw["names"] == ("web",)
