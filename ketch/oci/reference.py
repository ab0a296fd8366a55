"""Image references, normalised as Docker does.

    busybox                    -> docker.io/library/busybox:latest
    user/app:1                 -> docker.io/user/app:1
    localhost:5000/app         -> localhost:5000/app:latest
    quay.io/a/b@sha256:<hex>   -> quay.io/a/b@sha256:<hex>   (no default tag with a digest)

`Reference.familiar()` gives the short form Docker prints (busybox:latest,
localhost:5000/app:latest). The grammar is the distribution/reference one:
lowercase path components separated by `/`, an optional domain (has a `.` or
`:`, or is `localhost`, or has an uppercase letter), tag `[\\w][\\w.-]{0,127}`.
"""

from __future__ import annotations

import re
from functools import cache

from ketch.errors import InvalidArgument
from ketch.oci import digest as _digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
_DOMAIN = (r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
           r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
           r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")
_TAG = r"^[\w][\w.-]{0,127}$"
_ID = r"^[a-f0-9]{64}$"
MAX_NAME = 255


class Reference:
    """A parsed reference: immutable, hashable, equal when all four parts are.

    A plain class rather than a frozen dataclass: importing dataclasses costs
    every `ketch images` and `ketch run` ~11 ms.
    """

    __slots__ = ("domain", "path", "tag", "digest")
    domain: str
    path: str
    tag: str | None
    digest: str | None

    def __init__(self, domain: str, path: str, tag: str | None = None,
                 digest: str | None = None) -> None:
        set_ = object.__setattr__   # __setattr__ below refuses every assignment
        set_(self, "domain", domain)
        set_(self, "path", path)
        set_(self, "tag", tag)
        set_(self, "digest", digest)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of an immutable Reference")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of an immutable Reference")

    def _key(self) -> tuple:
        return (self.domain, self.path, self.tag, self.digest)

    def __reduce__(self):   # copy and pickle rebuild through __init__
        return (Reference, self._key())

    def __eq__(self, other) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Reference(domain={self.domain!r}, path={self.path!r}, tag={self.tag!r}, "
                f"digest={self.digest!r})")

    @property
    def name(self) -> str:
        """Full repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def familiar_name(self) -> str:
        """Repository as Docker prints it: busybox, user/app, localhost:5000/app."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX) and self.path.count("/") == 1:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    def familiar(self) -> str:
        out = self.familiar_name()
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


@cache
def _rx(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: listing images never needs the grammar."""
    return re.compile(pattern)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"
                   and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse(value: str, default_tag: bool = True) -> Reference:
    """Parse and normalise `value`; InvalidArgument with Docker's wording when malformed."""
    if not value or value != value.strip():
        raise InvalidArgument(f"invalid reference format: {value!r}")
    if _rx(_ID).match(value):
        raise InvalidArgument(
            f"invalid repository name ({value}), cannot specify 64-byte hexadecimal strings")
    rest, dig = value, None
    if "@" in rest:
        rest, _, dig = rest.partition("@")
        if not _digest.is_digest(dig):
            raise InvalidArgument(f"invalid reference format: {value!r} has a bad digest")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _rx(_TAG).match(tag):
            raise InvalidArgument(f"invalid reference format: {value!r} has a bad tag {tag!r}")
    if not rest:
        raise InvalidArgument(f"invalid reference format: {value!r}")
    domain, path = _split_domain(rest)
    # docker.io needs no check, and `ketch run busybox` then never compiles the
    # domain grammar (~0.5 ms).
    if domain != DEFAULT_DOMAIN and not _rx(_DOMAIN).match(domain):
        raise InvalidArgument(f"invalid reference format: {value!r} has a bad domain {domain!r}")
    for comp in path.split("/"):
        if not _rx(_COMPONENT).match(comp):
            if comp.lower() != comp:
                raise InvalidArgument(
                    f"invalid reference format: repository name ({path}) must be lowercase")
            raise InvalidArgument(f"invalid reference format: {value!r}")
    if len(domain) + 1 + len(path) > MAX_NAME:
        raise InvalidArgument(f"invalid reference format: {value!r} is longer than {MAX_NAME}")
    if tag is None and dig is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, dig)


def try_parse(value: str) -> Reference | None:
    try:
        return parse(value)
    except InvalidArgument:
        return None


def normalize(value: str) -> str:
    """The full normalised string of `value` (busybox -> docker.io/library/busybox:latest)."""
    return str(parse(value))


def familiar(full: str) -> str:
    """Short form of an already normalised reference string (no re-validation)."""
    if full.startswith(DEFAULT_DOMAIN + "/"):
        rest = full[len(DEFAULT_DOMAIN) + 1:]
        name = rest.split("@", 1)[0].rsplit(":", 1)[0]
        if rest.startswith(OFFICIAL_PREFIX) and name.count("/") == 1:
            return rest[len(OFFICIAL_PREFIX):]
        return rest
    return full
