"""Real registries for tests and benchmarks: Debian's docker-registry (distribution 2.8).

`start_registry(workdir, auth=...)` runs ``docker-registry serve`` on
127.0.0.1:<free port> with its storage under `workdir`, in one of three modes:

    "none"    open registry
    "basic"   htpasswd (bcrypt, written by apache2-utils' htpasswd -B)
    "token"   Bearer tokens from a TokenServer running in this process: RS256
              JWTs signed with a throw-away key whose self-signed certificate is
              the registry's rootcertbundle (the `kid` is the libtrust key id).

With tls=True it serves https with a self-signed certificate for 127.0.0.1
(workdir/tls.crt). `Registry.stop()` ends the registry by its PID. No pytest here, so bench/ can
use it too.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ketch.bench.workloads import free_port

USER, PASSWORD = "alice", "wonderland-42"
SERVICE, ISSUER = "ketch-test-registry", "ketch-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    """An RSA key made by the openssl CLI; RS256 signing done here (PKCS#1 v1.5)."""

    _SHA256_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

    def __init__(self, workdir: Path):
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=ketch-test-token", "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        text = subprocess.run(["openssl", "rsa", "-in", self.key, "-noout", "-text"],
                              check=True, capture_output=True, text=True).stdout
        self.n = self._field(text, "modulus")
        self.d = self._field(text, "privateExponent")
        spki = subprocess.run(["openssl", "pkey", "-in", self.key, "-pubout", "-outform", "DER"],
                              check=True, capture_output=True).stdout
        self.kid = self._libtrust_kid(spki)

    @staticmethod
    def _field(text: str, name: str) -> int:
        m = re.search(rf"^{name}:\n((?:\s+[0-9a-f:]+\n)+)", text, re.M)
        return int(re.sub(r"[\s:]", "", m.group(1)), 16)

    @staticmethod
    def _libtrust_kid(spki_der: bytes) -> str:
        # libtrust: sha256 of the DER public key, first 240 bits, base32, 4-char groups.
        enc = base64.b32encode(hashlib.sha256(spki_der).digest()[:30]).decode().rstrip("=")
        return ":".join(enc[i:i + 4] for i in range(0, len(enc), 4))

    def sign(self, data: bytes) -> bytes:
        k = (self.n.bit_length() + 7) // 8
        t = self._SHA256_INFO + hashlib.sha256(data).digest()
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")

    def jwt(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        body = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        return body + "." + _b64url(self.sign(body.encode()))


class TokenServer:
    """The realm of a token-auth registry. Grants: with USER/PASSWORD, what is asked;
    anonymous, only `pull` on repositories under public/. Records every request."""

    def __init__(self, key: SigningKey, lifetime: int = 300):
        self.key, self.lifetime = key, lifetime
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server._handle(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        q = parse_qs(urlsplit(h.path).query)
        auth = h.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            if (name, pw) != (USER, PASSWORD):
                self.requests.append({"scopes": q.get("scope", []), "user": name, "ok": False})
                return self._send(h, 401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "authentication failed"}]})
            user = name
        access = []
        for scope in q.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = actions.split(",")
            granted = wanted if user else [a for a in wanted if a == "pull"
                                           and name.startswith("public/")]
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        self.requests.append({"scopes": q.get("scope", []), "user": user, "ok": True})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": q.get("service", [""])[0],
                  "exp": now + self.lifetime, "nbf": now - 5, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        token = self.key.jwt(claims)
        self._send(h, 200, {"token": token, "access_token": token,
                            "expires_in": self.lifetime})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Registry:
    host: str  # 127.0.0.1:<port>
    proc: subprocess.Popen
    storage: Path
    auth: str = "none"
    token_server: TokenServer | None = None
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.token_server:
            self.token_server.stop()


def _auth_section(workdir: Path, auth: str) -> tuple[str, TokenServer | None]:
    if auth == "none":
        return "", None
    if auth == "basic":
        htpasswd = workdir / "htpasswd"
        subprocess.run(["htpasswd", "-Bbc", htpasswd, USER, PASSWORD], check=True,
                       capture_output=True)
        return (f"auth:\n  htpasswd:\n    realm: ketch-test\n    path: {htpasswd}\n"), None
    if auth == "token":
        ts = TokenServer(SigningKey(workdir))
        return (f"auth:\n  token:\n    realm: {ts.realm}\n    service: {SERVICE}\n"
                f"    issuer: {ISSUER}\n    rootcertbundle: {ts.key.cert}\n"), ts
    raise ValueError(f"unknown auth mode {auth!r}")


def _tls_section(workdir: Path) -> str:
    """A self-signed certificate for 127.0.0.1 (its own CA: trust it via certs.d)."""
    key, cert = workdir / "tls.key", workdir / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return f"  tls:\n    certificate: {cert}\n    key: {key}\n"


def start_registry(workdir: Path, auth: str = "none", tls: bool = False) -> Registry:
    binary = shutil.which("docker-registry")
    if not binary:
        raise FileNotFoundError("docker-registry is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    auth_yaml, token_server = _auth_section(workdir, auth)
    tls_yaml = _tls_section(workdir) if tls else ""
    for _attempt in range(5):
        port = free_port()
        cfg = workdir / "config.yml"
        cfg.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n  secret: {uuid.uuid4().hex}\n" + tls_yaml
            + auth_yaml)
        log = workdir / "registry.log"
        # Not a test's process: keep the per-test KETCH_* variables out of its environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KETCH_")}
        with open(log, "ab") as out:
            proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=out, env=env,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        if _wait_listening(port, proc, tls):
            return Registry(f"127.0.0.1:{port}", proc, storage, auth, token_server, log)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    if token_server:
        token_server.stop()
    raise RuntimeError(f"docker-registry did not start; see {log}: {log.read_text()[-500:]}")


def _wait_listening(port: int, proc: subprocess.Popen, tls: bool = False,
                    timeout: float = 10) -> bool:
    """True once OUR registry answers /v2/ on `port` (not some other process that
    took the port between free_port() and the registry's bind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if tls:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=1,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/v2/")
            resp = conn.getresponse()
            if resp.getheader("Docker-Distribution-Api-Version") == "registry/2.0":
                return proc.poll() is None
            return False
        except OSError:
            time.sleep(0.05)
        finally:
            conn.close()
    return False
