"""Registry authentication: the WWW-Authenticate challenge, Basic, and Bearer tokens.

A registry answers an unauthenticated request with 401 and a challenge:

    Bearer realm="https://auth.example/token",service="registry.example",scope="repository:x:pull"
    Basic realm="Registry Realm"

For Basic the credentials go on every request. For Bearer the client asks
the realm for a token covering the scopes it needs (sending the credentials,
if any, as Basic to the token server; anonymous otherwise) and caches it
until shortly before it expires. Scopes are ``repository:<name>:<actions>``;
a token is reused only for a request whose scopes it covers.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass, field

from ketch.errors import DataError, Unauthorized

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# Refresh a little before the server's expiry so a token never dies in flight.
_EXPIRY_SLACK = 10.0
# The token spec says a missing expires_in means 60 seconds.
_DEFAULT_EXPIRY = 60.0


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lower case
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (one or more challenges) into Challenges."""
    found: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = re.match(r"\s*,?\s*([A-Za-z][\w-]*)(?:\s+|$)", header[pos:])
        if not m:
            break
        scheme = m.group(1).lower()
        pos += m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            p = _PARAM.match(header, pos)
            if not p:
                break
            value = p.group(2) if p.group(2) is not None else p.group(3)
            params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = p.end()
        found.append(Challenge(scheme, params))
    return found


def repository_scope(name: str, *actions: str) -> str:
    return f"repository:{name}:{','.join(actions)}"


def merge_scopes(scopes: list[str] | tuple[str, ...] | set[str]) -> tuple[str, ...]:
    """Union the actions per resource: {"repository:a:pull", "repository:a:push"} -> one."""
    merged: dict[str, set[str]] = {}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        merged.setdefault(f"{kind}:{name}", set()).update(a for a in actions.split(",") if a)
    return tuple(sorted(f"{res}:{','.join(sorted(acts))}" for res, acts in merged.items()))


def _covers(have: tuple[str, ...], want: tuple[str, ...]) -> bool:
    held: dict[str, set[str]] = {}
    for scope in have:
        res, _, acts = scope.rpartition(":")
        held[res] = set(acts.split(","))
    for scope in want:
        res, _, acts = scope.rpartition(":")
        if not set(acts.split(",")) <= held.get(res, set()):
            return False
    return True


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Authenticator:
    """Per-registry auth state: the last challenge, credentials, cached tokens.

    `fetch_token(realm_url, params, basic)` is supplied by the transport (it
    owns the HTTP client), so this class stays free of I/O and is unit-tested
    with a plain function.
    """

    def __init__(self, registry: str, credentials: tuple[str, str] | None, fetch_token):
        self.registry = registry
        self.credentials = credentials
        self._fetch_token = fetch_token
        self.challenge: Challenge | None = None
        self._tokens: list[tuple[tuple[str, ...], str, float]] = []
        self._lock = threading.Lock()

    def learn(self, www_authenticate: str | None) -> bool:
        """Record the server's challenge; False if it offers nothing we speak."""
        for ch in parse_challenges(www_authenticate or ""):
            if ch.scheme == "bearer" and ch.realm:
                self.challenge = ch
                return True
            if ch.scheme == "basic":
                self.challenge = ch
                return True
        return False

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header for a request needing `scopes`, or None."""
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            if self.credentials is None:
                raise Unauthorized(f"{self.registry}: authentication required (run `ketch login {self.registry}`)")
            return basic_header(*self.credentials)
        return "Bearer " + self.token(scopes)

    def token(self, scopes: tuple[str, ...]) -> str:
        want = merge_scopes(scopes)
        now = time.monotonic()
        with self._lock:
            self._tokens = [t for t in self._tokens if t[2] > now]
            for have, tok, _exp in self._tokens:
                if _covers(have, want):
                    return tok
        tok, lifetime = self._request_token(want)
        with self._lock:
            margin = _EXPIRY_SLACK if lifetime > 2 * _EXPIRY_SLACK else lifetime / 2
            self._tokens.append((want, tok, now + lifetime - margin))
        return tok

    def forget_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def _request_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        ch = self.challenge
        assert ch is not None and ch.scheme == "bearer"
        params: list[tuple[str, str]] = []
        if ch.params.get("service"):
            params.append(("service", ch.params["service"]))
        for scope in scopes:
            params.append(("scope", scope))
        basic = None
        if self.credentials is not None:
            params.append(("account", self.credentials[0]))
            basic = basic_header(*self.credentials)
        body = self._fetch_token(ch.realm, params, basic)
        if not isinstance(body, dict):
            raise DataError(f"token server {ch.realm}: answer is not a JSON object")
        tok = body.get("token") or body.get("access_token")
        if not isinstance(tok, str) or not tok:
            raise DataError(f"token server {ch.realm}: answer carries no token")
        try:
            lifetime = float(body.get("expires_in") or _DEFAULT_EXPIRY)
        except (TypeError, ValueError):
            lifetime = _DEFAULT_EXPIRY
        return tok, lifetime
