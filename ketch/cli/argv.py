"""Declared commands and the argv parser that runs them without click.

click costs ~40 ms of imports (inspect, typing, enum ...) before a command
does any work; `ketch ps`, `images` and `run` are over in less. So their
flags are declared here once, with decorators shaped like click's
(`@command`, `@option`, `@argument`), and parsed by `parse()` in the style
of Docker's flag library: `-abc` bundles, `-n5`/`-n=5`/`-n 5`,
`--opt=value`, repeated options, `--`, `--flag=false`, and errors worded
like Docker's (`unknown flag: --xyz`, exit 125). The same declaration builds
the click command (`Command.click()`), used for `--help` and by click groups
that list these commands, so no flag is declared twice.

Importing this module imports nothing.
"""

from __future__ import annotations

_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")
_YES, _NO = ("1", "true", "t", "yes", "y", "on"), ("0", "false", "f", "no", "n", "off")


class UsageError(Exception):
    """Bad argv: the message Docker would print; the caller adds the help hint."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage   # also print the command's usage line (argument-count errors)


class HelpRequested(Exception):
    """`--help` (or `-h` where no option owns it) was given."""


class Option:
    """One flag; the arguments mean what they mean to click.option."""

    __slots__ = ("decls", "dest", "is_flag", "multiple", "type", "choices", "default",
                 "help", "metavar")

    def __init__(self, *decls: str, is_flag: bool = False, multiple: bool = False,
                 type: type | None = None, choices: tuple[str, ...] | None = None,
                 default: object = None, help: str = "", metavar: str | None = None):
        self.decls = [d for d in decls if d.startswith("-")]
        names = [d for d in decls if not d.startswith("-")]
        longs = [d for d in self.decls if d.startswith("--")]
        self.dest = names[0] if names else (longs or self.decls)[0].lstrip("-").replace("-", "_")
        self.is_flag, self.multiple, self.type, self.choices = is_flag, multiple, type, choices
        self.default = () if multiple else (False if is_flag and default is None else default)
        self.help, self.metavar = help, metavar

    def label(self) -> str:
        """`-n, --last` as Docker names a flag in its messages."""
        return ", ".join(self.decls)

    def convert(self, text: str) -> object:
        if self.type is int:
            try:
                return int(text)
            except ValueError:
                raise UsageError(f'invalid argument "{text}" for "{self.label()}" flag: '
                                 f'strconv.ParseInt: parsing "{text}": invalid syntax') from None
        if self.type is bool and not self.is_flag:   # a value option: click's spellings too
            low = text.lower()
            if low in _YES or low in _NO:
                return low in _YES
        if self.type is bool or self.is_flag:
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise UsageError(f'invalid argument "{text}" for "{self.label()}" flag: '
                             f'strconv.ParseBool: parsing "{text}": invalid syntax')
        if self.choices is not None and text not in self.choices:
            raise UsageError(f'invalid argument "{text}" for "{self.label()}" flag: '
                             f'must be one of {", ".join(self.choices)}')
        return text


class Argument:
    """A positional: one (required or not), or all the rest (nargs=-1)."""

    __slots__ = ("name", "required", "nargs")

    def __init__(self, name: str, required: bool | None = None, nargs: int = 1):
        self.name, self.nargs = name, nargs
        self.required = (nargs == 1) if required is None else required

    def usage(self) -> str:
        text = self.name.upper() if self.required else f"[{self.name.upper()}]"
        return text + ("..." if self.nargs == -1 else "")


class Command:
    """A command: its function, flags and positionals, and how it reports errors.

    interspersed=False: everything after the first positional is positional
    (the container's command for run/create). docker_exit: a KetchError exits
    1, not its own code, as Docker's commands outside run/create do.
    """

    def __init__(self, fn, name: str, interspersed: bool, docker_exit: bool):
        params = list(reversed(getattr(fn, "__ketch_params__", [])))
        self.fn, self.name = fn, name
        self.help = (fn.__doc__ or "").strip()
        self.options = [p for p in params if isinstance(p, Option)]
        self.arguments = [p for p in params if isinstance(p, Argument)]
        self.params = params
        self.interspersed, self.docker_exit = interspersed, docker_exit
        self._click = None

    def __call__(self, **kwargs):
        return self.fn(**kwargs)

    def usage(self) -> str:
        return " ".join(["[OPTIONS]"] + [a.usage() for a in self.arguments])

    def click(self):
        """The same command as a click.Command (for --help and click groups)."""
        if self._click is None:
            self._click = _to_click(self)
        return self._click


def option(*decls: str, **kwargs):
    def deco(fn):
        fn.__dict__.setdefault("__ketch_params__", []).append(Option(*decls, **kwargs))
        return fn
    return deco


def argument(name: str, required: bool | None = None, nargs: int = 1):
    def deco(fn):
        fn.__dict__.setdefault("__ketch_params__", []).append(Argument(name, required, nargs))
        return fn
    return deco


class Commands(dict):
    """A module's declared commands by name; `@FAST.command(...)` registers one."""

    def command(self, name: str, interspersed: bool = True, docker_exit: bool = False):
        def deco(fn) -> Command:
            cmd = self[name] = Command(fn, name, interspersed, docker_exit)
            return cmd
        return deco

    def click(self, name: str):
        """`module.<name>` as a click command: what COMMANDS and click groups expect."""
        if name not in self:
            raise AttributeError(name)
        return self[name].click()


def _index(cmd: Command) -> tuple[dict[str, Option], dict[str, Option], set[str]]:
    longs, shorts = {}, {}
    for opt in cmd.options:
        for d in opt.decls:
            if d.startswith("--"):
                longs[d] = opt
            else:
                shorts[d[1:]] = opt
    # click's rule, kept: -h is help unless an option owns it (run's --hostname).
    helps = {"--help", "-h"} - set(longs) - {"-" + s for s in shorts}
    return longs, shorts, helps


def _set(values: dict, opt: Option, value: object) -> None:
    if opt.multiple:
        values[opt.dest] = values[opt.dest] + (value,)
    else:
        values[opt.dest] = value


def _short(arg: str, rest: list[str], shorts: dict[str, Option], helps: set[str],
           values: dict) -> None:
    """One `-abc` word: bools set in turn; a value flag takes the remainder or the next word."""
    j = 1
    while j < len(arg):
        c = arg[j]
        if "-" + c in helps:
            raise HelpRequested
        opt = shorts.get(c)
        if opt is None:
            raise UsageError(f"unknown shorthand flag: '{c}' in {arg}")
        j += 1
        tail = arg[j:]
        if opt.is_flag:
            if tail.startswith("="):   # -a=false
                _set(values, opt, opt.convert(tail[1:]))
                return
            _set(values, opt, True)
            continue
        if tail:
            value = tail[1:] if tail.startswith("=") else tail
        elif rest:
            value = rest.pop(0)
        else:
            raise UsageError(f"flag needs an argument: '{c}' in {arg}")
        _set(values, opt, opt.convert(value))
        return


def parse(cmd: Command, args: list[str], path: str = "") -> dict:
    """argv -> the keyword arguments of cmd's function, as click would pass them.

    path names the command in messages (`image ls`; default: its name).
    """
    longs, shorts, helps = _index(cmd)
    values: dict = {o.dest: o.default for o in cmd.options}
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positional += rest
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in helps:
                raise HelpRequested
            opt = longs.get(name)
            if opt is None:
                raise UsageError(f"unknown flag: {name}")
            if opt.is_flag:
                _set(values, opt, opt.convert(value) if eq else True)
                continue
            if not eq:
                if not rest:
                    raise UsageError(f"flag needs an argument: {name}")
                value = rest.pop(0)
            _set(values, opt, opt.convert(value))
        elif arg.startswith("-") and arg != "-":
            _short(arg, rest, shorts, helps, values)
        else:
            positional.append(arg)
            if not cmd.interspersed:
                positional += rest
                break
    values.update(_assign(cmd, positional, path or cmd.name))
    return values


def _plural(n: int) -> str:
    return f"{n} argument" + ("" if n == 1 else "s")


def _assign(cmd: Command, words: list[str], path: str) -> dict:
    """Positionals to the declared arguments, with Docker's count messages."""
    low = sum(1 for a in cmd.arguments if a.required)
    many = any(a.nargs == -1 for a in cmd.arguments)
    high = None if many else len(cmd.arguments)
    quoted = f'"ketch {path}"'
    if high == 0 and words:
        raise UsageError(f"{quoted} accepts no arguments.", usage=True)
    if len(words) < low or (high is not None and len(words) > high):
        if low == high:
            need = f"exactly {_plural(low)}"
        elif len(words) < low:
            need = f"at least {_plural(low)}"
        else:
            need = f"at most {_plural(high)}"
        raise UsageError(f"{quoted} requires {need}.", usage=True)
    out, spare = {}, len(words) - low
    for a in cmd.arguments:
        if a.nargs == -1:
            take = spare + (1 if a.required else 0)
            out[a.name], words = tuple(words[:take]), words[take:]
            spare = 0
        elif a.required or spare > 0:
            spare -= 0 if a.required else 1
            out[a.name], words = words[0], words[1:]
        else:
            out[a.name] = None
    return out


def _to_click(cmd: Command):
    import click

    cls = click.Command
    if cmd.docker_exit:
        from ketch.cli._exit import DockerCommand as cls
    params = []
    for p in cmd.params:
        if isinstance(p, Argument):
            params.append(click.Argument([p.name], required=p.required, nargs=p.nargs))
            continue
        kw = {"is_flag": True} if p.is_flag else {"type": click.Choice(p.choices)
                                                  if p.choices else p.type}
        params.append(click.Option([*p.decls, p.dest], multiple=p.multiple, help=p.help,
                                   default=None if p.multiple else p.default,
                                   metavar=p.metavar, **kw))
    settings = {"ignore_unknown_options": False, "allow_interspersed_args": cmd.interspersed}
    return cls(cmd.name, callback=cmd.fn, params=params, help=cmd.help,
               context_settings=settings)
