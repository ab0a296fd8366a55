"""Reading and writing cgroup interface files, with one-line errors.

Every write names the file, the value and the cgroup; errno decides the
error class: ENOENT means the host lacks the knob (FailedPrecondition),
EINVAL/ERANGE mean the kernel refused the value (InvalidArgument).
"""

from __future__ import annotations

import errno
import os

from ketch.errors import FailedPrecondition, InvalidArgument

UNLIMITED = -1


def write(directory: str, name: str, value: object, field: str | None = None) -> None:
    path = os.path.join(directory, name)
    what = f"{field}: " if field else ""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise FailedPrecondition(
                f"{what}cannot set {name}: {path} does not exist (kernel or controller lacks it)"
            ) from exc
        raise FailedPrecondition(f"{what}open {path}: {exc.strerror}") from exc
    try:
        os.write(fd, str(value).encode())
    except OSError as exc:
        cls = InvalidArgument if exc.errno in (errno.EINVAL, errno.ERANGE) else FailedPrecondition
        raise cls(f"{what}set {name} to {value}: {exc.strerror} (in {directory})") from exc
    finally:
        os.close(fd)


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().strip()


def read_int(directory: str, name: str, default: int = 0) -> int:
    """An integer file; "max" reads as UNLIMITED; a missing file as `default`."""
    try:
        text = read(directory, name)
    except OSError:
        return default
    if text == "max":
        return UNLIMITED
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return default


def read_kv(directory: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line), e.g. memory.stat, cpu.stat."""
    out: dict[str, int] = {}
    try:
        text = read(directory, name)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def procs(directory: str) -> list[int]:
    """Every pid in the cgroup and its descendants."""
    found: list[int] = []
    for dirpath, _dirs, _files in os.walk(directory):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                found += [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
    return sorted(set(found))
