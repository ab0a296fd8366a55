"""Content digests (image-spec "descriptor digest"): parsing, validation, hashing.

A digest is kept as its canonical string, ``sha256:<64 lowercase hex>``.
Only sha256 is written; sha512 is accepted on read because image-spec allows it.
"""

from __future__ import annotations

import re

from ketch.errors import InvalidArgument

_ALGOS = {"sha256": 64, "sha512": 128}
# Patterns, not compiled at import: re compiles them on first use and caches
# them, and listing images never parses a digest.
_RE = r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$"
_HEX = r"^[a-f0-9]+$"


def parse(value: str) -> tuple[str, str]:
    """Split a digest into (algorithm, hex); InvalidArgument if it is malformed."""
    m = re.match(_RE, value or "")
    if not m:
        raise InvalidArgument(f"invalid digest {value!r}: want <algorithm>:<hex>")
    algo, hexpart = m.groups()
    want = _ALGOS.get(algo)
    if want is None:
        raise InvalidArgument(f"invalid digest {value!r}: unsupported algorithm {algo!r}")
    if len(hexpart) != want or not re.match(_HEX, hexpart):
        raise InvalidArgument(f"invalid digest {value!r}: want {want} lowercase hex digits")
    return algo, hexpart


def validate(value: str) -> str:
    """Return `value` if it is a well-formed digest, else raise InvalidArgument."""
    parse(value)
    return value


def is_digest(value: str) -> bool:
    try:
        parse(value)
    except InvalidArgument:
        return False
    return True


def hex_of(value: str) -> str:
    return parse(value)[1]


def of_bytes(data: bytes) -> str:
    """The sha256 digest of `data`."""
    import hashlib  # lazily: listing images never hashes

    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(value: str, n: int = 12) -> str:
    """Docker's short id: the first `n` hex digits, without the algorithm."""
    return value.split(":", 1)[-1][:n]


class Digester:
    """Incremental hashing for a digest's algorithm (sha256 unless told)."""

    def __init__(self, algorithm: str = "sha256"):
        if algorithm not in _ALGOS:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
        import hashlib

        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> str:
        return f"{self.algorithm}:{self._h.hexdigest()}"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """image-spec ChainIDs: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n])."""
    out: list[str] = []
    for diff in diff_ids:
        out.append(diff if not out else of_bytes(f"{out[-1]} {diff}".encode()))
    return out
