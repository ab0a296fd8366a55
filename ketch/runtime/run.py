"""`run` in the foreground: forward signals, wait, delete, exit with the status.

`create` made this process a child subreaper, so the container's init (whose
first parent, stage 1, has exited) is our child and `waitpid` gives its exit
status; other orphans that land on us are reaped along the way.
"""

from __future__ import annotations

import _signal
import os

from ketch.runtime import container
from ketch.runtime.state import Container

_FORWARD = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH


def wait_for(pid: int) -> int:
    """Reap until `pid` exits; shell-style status (128+n for signal n)."""
    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    for s in _FORWARD:
        _signal.signal(s, forward)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def wait_and_delete(c: Container, pid: int) -> int:
    """After `start`: relay the terminal (if we hold it), wait for init, delete."""
    if c.console is not None:
        from ketch.runtime import tty
        tty.relay(c.console, lambda: not c.alive())
        os.close(c.console)
    status = wait_for(pid)
    container.delete(c, force=True)
    return status
