"""OCI hooks: run each with the container's state JSON on stdin, within its timeout.

prestart, createRuntime, createContainer and startContainer failures fail
the operation; poststart and poststop failures are warnings and the rest of
the hooks still run (runtime-spec "Lifecycle").
"""

from __future__ import annotations

from ketch.errors import FailedPrecondition
from ketch.runtime import fastjson, log

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def run_all(hooks: list[dict], kind: str, state: dict | None) -> None:
    data = fastjson.dumps(state or {}).encode()
    for i, hook in enumerate(hooks or []):
        try:
            run_one(hook, data)
        except FailedPrecondition as exc:
            if kind in FATAL:
                raise FailedPrecondition(f"{kind} hook #{i} ({hook['path']}): {exc}") from None
            log.warn(f"{kind} hook #{i} ({hook['path']}): {exc}")


def run_one(hook: dict, data: bytes) -> None:
    import subprocess

    args = hook.get("args") or [hook["path"]]
    env = dict(e.split("=", 1) for e in hook.get("env") or [])
    try:
        proc = subprocess.run(args, executable=hook["path"], input=data, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=hook.get("timeout"), close_fds=True)
    except subprocess.TimeoutExpired:
        raise FailedPrecondition(f"timed out after {hook['timeout']}s") from None
    except OSError as exc:
        raise FailedPrecondition(exc.strerror or str(exc)) from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = f": {err[-1]}" if err else ""
        raise FailedPrecondition(f"exit status {proc.returncode}{tail}")
