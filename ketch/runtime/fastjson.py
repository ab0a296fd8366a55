"""JSON for the container start path, without importing `json`.

`json` imports `re` (its decoder and encoder compile regexes at import),
which costs a measurable slice of `ketch-runc run`. The C accelerator
`_json` needs none of that: its scanner is driven here with a minimal
context, and the encoder below covers the plain types runtime state holds.
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
        text = text.decode("utf-8-sig")
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


def dumps(obj) -> str:
    out: list[str] = []
    _encode(obj, out)
    return "".join(out)


def _encode(obj, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(_json.encode_basestring_ascii(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        import json
        out.append(json.dumps(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for i, (k, v) in enumerate(obj.items()):
            if i:
                out.append(", ")
            out.append(_json.encode_basestring_ascii(str(k)))
            out.append(": ")
            _encode(v, out)
        out.append("}")
    elif isinstance(obj, (list, tuple, set)):
        out.append("[")
        for i, v in enumerate(sorted(obj) if isinstance(obj, set) else obj):
            if i:
                out.append(", ")
            _encode(v, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")
