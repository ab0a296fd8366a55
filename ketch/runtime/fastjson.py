"""JSON for the container start path, without importing `json`.

`json` imports `re` (its decoder and encoder compile regexes at import),
which costs a measurable slice of `ketch-runc run`. The C accelerator
`_json` needs none of that: its scanner is driven here with a minimal
context, and the C encoder is built with json.dumps' defaults (sets become
sorted lists).
Anything unusual falls back to the `json` module.
"""

from __future__ import annotations

import _json

_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)
    memo: dict = {}


_scan = _json.make_scanner(_Context())
_WS = " \t\n\r"


def loads(text: str | bytes):
    if isinstance(text, bytes):
        text = text.decode()  # not "utf-8-sig": that codec is one more module to import
    if text.startswith("\ufeff"):
        text = text[1:]
    start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
        if text[end:].strip(_WS):
            raise ValueError
    except Exception:  # noqa: BLE001 - bad input: let json say what is wrong, and where
        import json
        return json.loads(text)
    finally:
        _Context.memo.clear()
    return obj


def _default(obj):
    if isinstance(obj, set):
        return sorted(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


# json.dumps' C encoder with its default separators, built here without json's import.
_encoder = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                              ": ", ", ", False, False, True)


def dumps(obj) -> str:
    return "".join(_encoder(obj, 0))
