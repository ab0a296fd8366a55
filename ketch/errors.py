"""The one error tree of ketch.

Every layer raises one of these (adding context on the way up with
``raise X(f"...") from exc``); front ends map them to an exit code (CLI) or
an HTTP status (API) in one place. The message is the single line a user
sees: what failed, on what.

    KetchError                      exit 125, HTTP 500
    ├── InvalidArgument             exit 125, HTTP 400   bad flag, bad spec field, bad reference
    ├── NotFound                    exit 125, HTTP 404   no such container/image/volume/network
    ├── AlreadyExists               exit 125, HTTP 409   name or id taken
    ├── Conflict                    exit 125, HTTP 409   in use, wrong state for the operation
    ├── FailedPrecondition          exit 125, HTTP 412   host lacks what is needed (kernel feature, tool)
    ├── Unavailable                 exit 125, HTTP 503   registry down, daemon not answering
    ├── Unauthorized                exit 125, HTTP 401   registry refused the credentials (or wants some)
    ├── DataError                   exit 125, HTTP 500   digest mismatch, corrupt store, hostile layer
    └── ExecError                   exit 126/127         the container's command cannot be run
"""

from __future__ import annotations


class KetchError(Exception):
    """Base of all ketch errors; the message is one user-facing line."""

    exit_code = 125
    http_status = 500

    def __init__(self, message: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgument(KetchError):
    http_status = 400


class NotFound(KetchError):
    http_status = 404


class AlreadyExists(KetchError):
    http_status = 409


class Conflict(KetchError):
    http_status = 409


class FailedPrecondition(KetchError):
    http_status = 412


class Unavailable(KetchError):
    http_status = 503


class Unauthorized(KetchError):
    http_status = 401


class DataError(KetchError):
    http_status = 500


class ExecError(KetchError):
    """The container's command could not be started: 126 (cannot execute) or 127 (not found)."""

    exit_code = 126
    http_status = 500


def describe_os_error(exc: OSError) -> str:
    """'No such file or directory' from an OSError, without the errno prefix."""
    return exc.strerror or str(exc)
