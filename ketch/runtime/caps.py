"""Linux capabilities for a container process: names, parsing, applying.

The runtime-spec lists capabilities by name in five sets (bounding,
effective, permitted, inheritable, ambient). This module maps the names to
numbers and applies the sets in init, in the order runc uses:

    1. drop_bounding(bounding)   needs CAP_SETPCAP, so before anything is lost
    2. keep_caps(True)           so permitted survives setuid to a non-root user
       ... init switches uid/gid ...
    3. keep_caps(False)
    4. set_sets(eff, perm, inh)  capset(2); effective is cleared by setuid
    5. set_ambient(ambient)      needs each cap in permitted and inheritable

Two kinds of name are treated differently (runtime-spec: a value that cannot
be mapped to a kernel interface MUST error; runc behaves the same way):

* an unknown name (``CAP_TEST``) -> InvalidArgument naming it;
* a known name the running kernel lacks (number > cap_last_cap) -> ignored,
  with a warning, as runc does.

A known name the kernel has but that is missing from the runtime's own
bounding set (this sandbox lacks CAP_SYS_RESOURCE) can never be granted.
runc fails the whole container ("unable to apply caps"); ketch drops that one
capability with a warning instead, so `--privileged`-style configs still run
on such hosts. The warning names every capability dropped.
"""

from __future__ import annotations

from ketch._sys import caps as _sys
from ketch.errors import FailedPrecondition, InvalidArgument

TYPE_CHECKING = False  # typing and collections.abc cost a container start ~8 ms of CPU each
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    Warn = Callable[[str], None]

#: Every capability name runtime-spec may use, with its number (linux/capability.h).
CAPS: dict[str, int] = {
    name: num
    for num, name in enumerate(
        [
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
            "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        ]
    )
}
NAMES: dict[int, str] = {num: name for name, num in CAPS.items()}

_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except (OSError, ValueError):
            _last_cap = max(NAMES)  # old kernels without the file: trust our table
    return _last_cap


def own_bounding() -> int:
    """The calling process's bounding set, as a bitmask (from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (last_cap() + 1)) - 1


def check_names(names: Iterable[str], field: str = "process.capabilities") -> None:
    """Raise InvalidArgument for the first name that is not a capability."""
    for name in names:
        if not isinstance(name, str) or name.upper() not in CAPS:
            raise InvalidArgument(f"{field}: unknown capability {name!r}")


def parse(names: list[str], warn: Warn | None = None, field: str = "process.capabilities",
          bounding: int | None = None) -> set[int]:
    """Capability numbers for `names`; unknown names -> InvalidArgument.

    Names are matched case-insensitively ("cap_chown" is accepted, as runc
    does). Capabilities the kernel or our own bounding set cannot provide are
    left out, and `warn` (if given) is told which (see the module docstring).
    `bounding` is our own bounding set if the caller read it already.
    """
    check_names(names, field)
    top = last_cap()
    if bounding is None:
        bounding = own_bounding()
    out: set[int] = set()
    for name in names:
        num = CAPS[name.upper()]
        if num > top:
            if warn:
                warn(f"{field}: capability {name} is not supported by this kernel, ignored")
            continue
        if not bounding >> num & 1:
            if warn:
                warn(f"{field}: capability {name} is not in the runtime's bounding set, ignored")
            continue
        out.add(num)
    return out


def parse_spec(capabilities: dict | None, warn: Warn | None = None) -> dict[str, set[int]]:
    """All five sets of a runtime-spec process.capabilities object, parsed."""
    capabilities = capabilities or {}
    bounding = own_bounding()  # once, not once per set: it is a read of /proc/self/status
    sets = {}
    for key in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        value = capabilities.get(key) or []
        if not isinstance(value, list):
            raise InvalidArgument(f"process.capabilities.{key}: must be a list of names")
        sets[key] = parse(value, warn, f"process.capabilities.{key}", bounding)
    return sets


def parse_spec_warning(capabilities: dict | None, warn: Warn) -> dict[str, set[int]]:
    """parse_spec, telling `warn` once per capability left out (naming its sets).

    A --privileged style config names each capability in all five sets: one
    line per capability, not five.
    """
    skipped: dict[str, list[str]] = {}

    def collect(msg: str) -> None:
        field, _, why = msg.partition(": ")
        skipped.setdefault(why, []).append(field.rsplit(".", 1)[-1])
    sets = parse_spec(capabilities, collect)
    for why, keys in skipped.items():
        warn(f"process.capabilities ({', '.join(keys)}): {why}")
    return sets


def mask(caps: Iterable[int]) -> int:
    out = 0
    for c in caps:
        out |= 1 << c
    return out


def names(bits: int) -> list[str]:
    """Names of the capabilities set in a bitmask, in number order."""
    return [NAMES.get(n, f"CAP_{n}") for n in range(bits.bit_length()) if bits >> n & 1]


def drop_bounding(keep: set[int]) -> None:
    """Drop every capability not in `keep` from the bounding set."""
    for num in range(last_cap() + 1):
        if num in keep or not _sys.bounding_has(num):
            continue
        try:
            _sys.bounding_drop(num)
        except OSError as exc:
            raise FailedPrecondition(
                f"drop {NAMES.get(num, num)} from the bounding set: {exc.strerror}"
            ) from exc


def keep_caps(on: bool) -> None:
    """PR_SET_KEEPCAPS: keep permitted capabilities across setuid(2) away from root."""
    _sys.set_keepcaps(on)


def set_sets(effective: set[int], permitted: set[int], inheritable: set[int]) -> None:
    """capset(2) the three per-thread sets."""
    try:
        _sys.capset(mask(effective), mask(permitted), mask(inheritable))
    except OSError as exc:
        raise FailedPrecondition(f"apply capabilities: {exc.strerror}") from exc


def set_ambient(caps: set[int]) -> None:
    """Make the ambient set exactly `caps` (each must be permitted and inheritable)."""
    try:
        _sys.ambient_clear_all()
    except OSError as exc:
        if caps:  # kernels before 4.3 have no ambient set; only an error if one is wanted
            raise FailedPrecondition(f"clear ambient capabilities: {exc.strerror}") from exc
        return
    for num in sorted(caps):
        try:
            _sys.ambient_raise(num)
        except OSError as exc:
            raise FailedPrecondition(
                f"raise ambient capability {NAMES.get(num, num)}: {exc.strerror}"
            ) from exc


def no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS (process.noNewPrivileges)."""
    _sys.set_no_new_privs()


def current(pid: int | str = "self") -> dict[str, int]:
    """The five sets of a process as bitmasks, read from /proc/<pid>/status."""
    keys = {"CapInh": "inheritable", "CapPrm": "permitted", "CapEff": "effective",
            "CapBnd": "bounding", "CapAmb": "ambient"}
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in keys:
                out[keys[key]] = int(line.split()[1], 16)
    return out
