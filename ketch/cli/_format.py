"""Output helpers shared by the CLI: tables, sizes, ages and `--format` templates.

`--format` understands the Go-template forms people actually type with
Docker: `{{.State.Status}}`, `{{json .Config}}`, `{{.Name}} {{.Id}}`,
`{{index .Config.Labels "k"}}`, `{{join .Args ","}}`, `{{upper .Name}}`,
`{{lower ...}}`, `{{title ...}}`, `{{println ...}}`, and the `table`
directive (a header row, then one row per item, columns aligned like
Docker's tabwriter). `json` alone prints each item as one JSON line.
Anything else is an InvalidArgument naming the action, not a traceback.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Iterable, Mapping

from ketch.engine.humanize import human_duration, human_size  # noqa: F401 (re-export)
from ketch.errors import InvalidArgument

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)


def _lookup(data: object, path: str) -> object:
    """Resolve `.A.B.C` against nested dicts (and attributes of objects)."""
    if path in (".", ""):
        return data
    cur = data
    for part in path.lstrip(".").split("."):
        if isinstance(cur, Mapping):
            if part not in cur:
                # Docker prints "<no value>" for a missing map key.
                return None
            cur = cur[part]
        elif hasattr(cur, part):
            cur = getattr(cur, part)
        else:
            raise InvalidArgument(f"template: can't evaluate field {part} in {path!r}")
    return cur


def _text(value: object) -> str:
    """Go's fmt rendering of a value, as far as the common cases go."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_text(v) for v in value) + "]"
    return str(value)


def _arg(data: object, token: str) -> object:
    if token.startswith("."):
        return _lookup(data, token)
    if token[:1] in ('"', "'"):
        return token[1:-1].replace('\\"', '"')
    if token.lstrip("-").isdigit():
        return int(token)
    raise InvalidArgument(f"template: unexpected {token!r}")


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|\S+')


@functools.lru_cache(maxsize=256)
def _words(action: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(action))


def _eval(data: object, action: str) -> str:
    words = _words(action)
    if not words:
        return ""
    fn, args = words[0], [_arg(data, w) for w in words[1:]]
    if fn.startswith("."):
        return _text(_lookup(data, fn))
    if fn == "json":
        return json.dumps(args[0] if args else data, separators=(",", ":"))
    if fn in ("upper", "lower", "title") and len(args) == 1:
        return getattr(_text(args[0]), fn)()
    if fn == "index" and len(args) == 2:
        container, key = args
        try:
            return _text(container[key])
        except (KeyError, IndexError, TypeError):
            return "<no value>"
    if fn == "join" and len(args) == 2:
        return str(args[1]).join(_text(a) for a in (args[0] or []))
    if fn == "println":
        return " ".join(_text(a) for a in args) + "\n"
    if fn == "len" and len(args) == 1:
        return str(len(args[0] or []))
    raise InvalidArgument(f"template: function {fn!r} not defined")


@functools.lru_cache(maxsize=64)
def _parse(template: str) -> tuple[tuple[str, str | None], ...]:
    """Literal text and actions of a template, parsed once for all items."""
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    parts, pos = [], 0
    for m in _ACTION.finditer(template):
        parts.append((template[pos:m.start()], m.group(1)))
        pos = m.end()
    parts.append((template[pos:], None))
    return tuple(parts)


def render(template: str, data: object) -> str:
    """Render one item through a Go-style template (escapes \\t and \\n like Docker)."""
    return "".join(lit + (_eval(data, act) if act is not None else "")
                   for lit, act in _parse(template))


def table(rows: Iterable[Iterable[object]], header: Iterable[str] | None = None) -> str:
    """Columns padded to the widest cell plus three spaces, as Docker's tabwriter does."""
    all_rows = [[str(c) for c in r] for r in rows]
    if header is not None:
        all_rows.insert(0, list(header))
    if not all_rows:
        return ""
    widths = [0] * max(len(r) for r in all_rows)
    for r in all_rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_items(items: list[object], fmt: str | None, headers: Mapping[str, str],
                 default: str) -> str:
    """Render items by a `--format` value, or by the command's default table template.

    `headers` maps field names (`ID`) to column titles (`CONTAINER ID`).
    """
    fmt = fmt or default
    if fmt == "json":
        return "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in items)
    if fmt.startswith("table"):
        body = fmt[len("table"):].strip() or default.removeprefix("table").strip()
        cols = body.replace("\\t", "\t").split("\t")
        head = [_header(c, headers) for c in cols]
        return table(([render(c, i) for c in cols] for i in items), head)
    return "".join(render(fmt, i).rstrip("\n") + "\n" for i in items)


def fields_table(items: list[Mapping[str, object]], fields: list[str],
                 headers: Mapping[str, str]) -> str:
    """What format_items prints for `table {{.A}}\t{{.B}}...`, without the template engine:
    the default tables of `ps` and `images` are most of their calls."""
    return table(([_text(i.get(f)) for f in fields] for i in items), [headers[f] for f in fields])


def _header(col: str, headers: Mapping[str, str]) -> str:
    fields = re.findall(r"{{\s*(?:\w+\s+)?\.(\w+)", col)
    if not fields:
        return col.strip().upper()
    return " ".join(headers.get(f, f.upper()) for f in fields)


def ago(ts: float, now: float | None = None) -> str:
    """"3 minutes ago", as in Docker's CREATED column."""
    return human_duration((now or time.time()) - ts) + " ago"


def echo(text: object = "", err: bool = False, nl: bool = True) -> None:
    """click.echo's contract without click: text (+ newline) written and flushed."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{text}\n" if nl else str(text))
    stream.flush()


def truncate_id(value: str, no_trunc: bool = False) -> str:
    value = value.removeprefix("sha256:")
    return value if no_trunc else value[:12]
