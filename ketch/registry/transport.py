"""HTTP to one registry: scheme choice, authentication, retries, error mapping.

Every request of the client goes through `Transport.request`, which

1. pings ``/v2/`` once to learn the scheme and the auth challenge: https
   always; plain http only after https failed and only for loopback hosts or
   registries marked insecure (see config.py), as Docker does;
2. adds the Authorization header for the scopes the request needs (auth.py);
3. retries connection errors, 429 and 5xx with exponential backoff;
4. answers a 401 by re-reading the challenge and retrying once with a fresh
   token (an expired token or a scope the cached one lacks);
5. maps failures to ketch's errors, one line each: httpx exceptions never
   escape this module.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable

import httpx

from ketch.errors import DataError, KetchError, NotFound, Unauthorized, Unavailable
from ketch.registry import config
from ketch.registry.auth import Authenticator

RETRY_STATUS = {429, 500, 502, 503, 504}
#: The longest Retry-After honoured between two attempts, in seconds.
MAX_RETRY_AFTER = 10.0
_NOT_FOUND_CODES = {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}
_UNSET = object()
Content = bytes | Callable[[], Iterable[bytes]] | None


def _timeout() -> httpx.Timeout:
    seconds = float(os.environ.get("KETCH_REGISTRY_TIMEOUT") or 30)
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def registry_error(resp: httpx.Response) -> tuple[str, str]:
    """(code, message) of a registry error answer; Docker's lower-case wording."""
    try:
        body = json.loads(resp.read() or b"{}")
        first = body["errors"][0]
        code = str(first.get("code") or "")
        message = str(first.get("message") or code.lower().replace("_", " "))
        return code, message
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, httpx.HTTPError):
        return "", resp.reason_phrase.lower() or f"status {resp.status_code}"


class Transport:
    """One registry host (``registry.example:5000``) and its auth state."""

    def __init__(self, registry: str, *, credentials=_UNSET, retries: int = 3,
                 backoff: float = 0.2, client: httpx.Client | None = None):
        self.registry = registry
        self.retries = max(1, retries)
        self.backoff = backoff
        if credentials is _UNSET:
            credentials = config.get_credentials(registry)
        self.client = client or httpx.Client(timeout=_timeout(), follow_redirects=True,
                                             verify=_tls_context(registry),
                                             limits=httpx.Limits(max_connections=16))
        self.auth = Authenticator(registry, credentials, self._fetch_token)
        self.base: str | None = None

    def close(self) -> None:
        self.client.close()

    # -- the ping: scheme and challenge ---------------------------------------------------

    def ping(self) -> None:
        """GET /v2/ to choose the scheme and learn the challenge (once)."""
        if self.base is not None:
            return
        schemes = ["https", "http"] if config.allows_plain_http(self.registry) else ["https"]
        last: Exception | None = None
        for i, scheme in enumerate(schemes):
            base = f"{scheme}://{self.registry}"
            final = i == len(schemes) - 1
            try:
                # An https probe that will fall back to http is tried once: a
                # plain-http registry fails the TLS handshake every time.
                resp = self._send("GET", base + "/v2/", {}, None,
                                  attempts=self.retries if final else 1)
            except (Unavailable, DataError) as exc:
                if final and last is None:
                    raise
                last = exc
                continue
            if resp.status_code not in (200, 401) and last is not None:
                # An https-only registry answers our plain-http fallback with 400:
                # the https failure (a certificate, say) is the one to report.
                resp.close()
                break
            if resp.status_code == 401:
                if not self.auth.learn(resp.headers.get("www-authenticate")):
                    raise Unauthorized(f"{self.registry}: unsupported authentication challenge "
                                       f"{resp.headers.get('www-authenticate')!r}")
            elif resp.status_code != 200:
                raise DataError(f"{self.registry}: not a registry (GET /v2/ answered "
                                f"{resp.status_code})")
            self.base = base
            return
        raise last if isinstance(last, KetchError) else Unavailable(str(last))

    # -- requests ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        self.ping()
        return path if path.startswith(("http://", "https://")) else self.base + path

    def request(self, method: str, path: str, *, scopes: tuple[str, ...], what: str,
                headers: dict | None = None, params: dict | None = None,
                content: Content = None, stream: bool = False,
                ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Send, authenticated and retried; the response if its status is in `ok`.

        `what` names the operation for error messages ("manifest foo:1").
        With stream=True the caller must close the response.
        """
        url = self.url(path)
        for attempt in (1, 2):
            hdrs = dict(headers or {})
            auth = self.auth.header(scopes)
            if auth:
                hdrs["Authorization"] = auth
            resp = self._send(method, url, hdrs, content, params=params, stream=stream, what=what)
            if resp.status_code != 401 or attempt == 2:
                break
            resp.close()
            # A stale token or one without the scope now needed: learn and retry once.
            if not self.auth.learn(resp.headers.get("www-authenticate")):
                break
            self.auth.forget_tokens()
        if resp.status_code in ok:
            return resp
        try:
            self.raise_for(resp, what)
        finally:
            resp.close()
        raise AssertionError("unreachable")

    def raise_for(self, resp: httpx.Response, what: str) -> None:
        code, message = registry_error(resp)
        status = resp.status_code
        if status in (401, 403) or code in ("UNAUTHORIZED", "DENIED"):
            if status == 401 and self.auth.credentials and self.auth.challenge \
                    and self.auth.challenge.scheme == "basic":
                message = "incorrect username or password"
            raise Unauthorized(f"{what}: unauthorized: {message or 'authentication required'}")
        if status == 404 or code in _NOT_FOUND_CODES:
            raise NotFound(f"{what}: {message or 'not found'}")
        if status >= 500:
            raise Unavailable(f"{what}: registry {self.registry} answered {status} {message}")
        raise DataError(f"{what}: registry {self.registry} answered {status} {message}".rstrip())

    def _send(self, method: str, url: str, headers: dict, content: Content, *,
              params: dict | None = None, stream: bool = False, what: str = "",
              attempts: int | None = None) -> httpx.Response:
        attempts = attempts or self.retries
        what = what or f"{method} {url}"
        for attempt in range(1, attempts + 1):
            delay = self.backoff * (2 ** (attempt - 1))
            body = content() if callable(content) else content
            try:
                req = self.client.build_request(method, url, headers=headers, params=params,
                                                content=body)
                resp = self.client.send(req, stream=stream)
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise _transport_error(self.registry, what, exc) from exc
            except httpx.HTTPError as exc:
                raise DataError(f"{what}: {exc}") from exc
            else:
                if resp.status_code not in RETRY_STATUS or attempt == attempts:
                    return resp
                delay = max(delay, _retry_after(resp))
                resp.close()
            time.sleep(delay)
        raise AssertionError("unreachable")

    # -- token endpoint -------------------------------------------------------------------

    def _fetch_token(self, realm: str, params: list[tuple[str, str]], basic: str | None) -> dict:
        headers = {"Authorization": basic} if basic else {}
        what = f"get token from {realm}"
        resp = self._send("GET", realm, headers, None, params=httpx.QueryParams(params), what=what)
        try:
            if resp.status_code in (401, 403):
                _code, message = registry_error(resp)
                raise Unauthorized(f"{self.registry}: {message}: incorrect username or password"
                                   if basic else f"{self.registry}: {message}")
            if resp.status_code != 200:
                raise Unavailable(f"{what}: answered {resp.status_code}")
            try:
                return json.loads(resp.read())
            except ValueError as exc:
                raise DataError(f"{what}: answer is not JSON") from exc
        finally:
            resp.close()


def _retry_after(resp: httpx.Response) -> float:
    """The server's Retry-After in seconds (0 if absent); capped so a pull never stalls."""
    try:
        return min(max(float(resp.headers.get("retry-after", 0)), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


def _tls_context(registry: str) -> ssl.SSLContext | bool:
    """System CAs plus the registry's own from certs.d (as Docker's certs.d/<host>/*.crt)."""
    cas = config.ca_files(registry)
    if not cas:
        return True
    ctx = ssl.create_default_context()
    for ca in cas:
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise DataError(f"load CA certificate {str(ca)!r} for {registry}: {exc}") from exc
    return ctx


def _transport_error(registry: str, what: str, exc: httpx.TransportError) -> KetchError:
    if isinstance(exc, httpx.ConnectError):
        reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or "connection failed"
        if "refused" in reason.lower():
            reason = "connection refused"
        return Unavailable(f"{what}: cannot reach registry {registry}: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"{what}: registry {registry} timed out")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ProtocolError):
        return DataError(f"{what}: registry {registry} answered garbage ({exc})")
    return Unavailable(f"{what}: registry {registry}: {exc}")

