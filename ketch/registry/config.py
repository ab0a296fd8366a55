"""Registry settings on the client side: credentials and insecure registries.

Credentials are kept in Docker's ``config.json`` format
(``{"auths": {"<host>": {"auth": base64("user:password")}}}``) but in ketch's
own file, so `ketch login` never rewrites a Docker installation's file:

    $KETCH_CONFIG/config.json            if KETCH_CONFIG is set (a directory)
    $XDG_CONFIG_HOME/ketch/config.json   else, default ~/.config/ketch/config.json

Lookups fall back, read-only, to Docker's file ($DOCKER_CONFIG/config.json or
~/.docker/config.json), as Podman does, so a machine already logged in with
`docker login` works unchanged. Credential helpers (credsStore/credHelpers)
are not run: only inline ``auth`` entries are read.

Plain http is used only for loopback hosts and for registries marked
insecure, either in KETCH_INSECURE_REGISTRIES (comma separated host[:port])
or in the ``"insecure-registries"`` list of the same config.json (the key
Docker uses in daemon.json).

A registry with its own certificate authority is trusted through
``<config dir>/certs.d/<host[:port]>/*.crt``, and Docker's
``/etc/docker/certs.d/<host[:port]>/*.crt`` is read as well (Docker's layout).
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from ketch.errors import DataError, InvalidArgument

#: The key under which Docker Hub credentials are stored, as Docker writes it.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}
DOCKER_CERTS_D = "/etc/docker/certs.d"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def config_dir() -> Path:
    explicit = os.environ.get("KETCH_CONFIG")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "ketch"


def config_file() -> Path:
    return config_dir() / "config.json"


def docker_config_file() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def ca_files(registry: str) -> list[Path]:
    """CA certificates to trust for `registry` (certs.d/<registry>/*.crt)."""
    found: list[Path] = []
    for base in (config_dir() / "certs.d", Path(DOCKER_CERTS_D)):
        d = base / registry
        if d.is_dir():
            found += sorted(d.glob("*.crt"))
    return found


def auth_key(registry: str) -> str:
    """The key a registry's credentials are stored under (Docker's spelling)."""
    return DOCKER_HUB_KEY if registry in _HUB_HOSTS else registry


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(f"read registry config {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"read registry config {str(path)!r}: not a JSON object")
    return data


def _write(path: Path, data: dict) -> None:
    """Write atomically, readable by the owner only (it holds passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _decode_entry(entry: object) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None
    if entry.get("username") and entry.get("password"):
        return entry["username"], entry["password"]
    return None


def _lookup(auths: dict, registry: str) -> tuple[str, str] | None:
    key = auth_key(registry)
    for name in (key, f"https://{key}", f"http://{key}", f"https://{key}/v1/", f"{key}/v1/"):
        found = _decode_entry(auths.get(name))
        if found:
            return found
    return None


def get_credentials(registry: str) -> tuple[str, str] | None:
    """(username, password) for `registry`, from ketch's file, then Docker's; or None."""
    for path in (config_file(), docker_config_file()):
        try:
            auths = _read(path).get("auths") or {}
        except DataError:
            if path == config_file():
                raise
            continue  # a broken Docker file must not break ketch
        found = _lookup(auths, registry) if isinstance(auths, dict) else None
        if found:
            return found
    return None


def store_credentials(registry: str, username: str, password: str) -> Path:
    if not username or ":" in username:
        raise InvalidArgument(f"invalid username {username!r}")
    path = config_file()
    data = _read(path)
    auths = data.setdefault("auths", {})
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[auth_key(registry)] = {"auth": token}
    _write(path, data)
    return path


def erase_credentials(registry: str) -> bool:
    """Forget `registry`'s credentials in ketch's file; False if none were stored."""
    path = config_file()
    data = _read(path)
    auths = data.get("auths") or {}
    key = auth_key(registry)
    if key not in auths:
        return False
    del auths[key]
    _write(path, data)
    return True


def insecure_registries() -> set[str]:
    names = {n.strip() for n in os.environ.get("KETCH_INSECURE_REGISTRIES", "").split(",")}
    listed = _read(config_file()).get("insecure-registries") or []
    if isinstance(listed, list):
        names.update(str(n).strip() for n in listed)
    names.discard("")
    return names


def allows_plain_http(registry: str) -> bool:
    """True for loopback hosts and registries marked insecure (host or host:port)."""
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    if host in _LOOPBACK or registry in _LOOPBACK:
        return True
    marked = insecure_registries()
    return registry in marked or host in marked
