"""Docker's default seccomp profile, as runtime-spec linux.seccomp data.

Written from the profile's documented semantics, not copied: deny by default
with EPERM, allow the syscalls an ordinary program needs, and keep blocked
what is not namespaced or widens the kernel attack surface (kernel modules,
kexec, reboot, swap, the clock, keyrings, bpf, perf, ptrace, mounting, new
user namespaces). Some of those are allowed again when the container holds
the capability that makes them meaningful, as Docker does; runtime-spec
cannot express capability conditions, so the caller passes the container's
capability names and gets a profile resolved for them.
"""

from __future__ import annotations

import os

# Allowed for every container. Names missing on an architecture are ignored
# when the filter is built, so 32-bit and *_time64 variants can sit beside
# the 64-bit ones.
ALLOWED = [
    # files and directories
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range",
    "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
    "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64", "getxattr", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listxattr", "llistxattr", "lremovexattr",
    "lseek", "_llseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod", "mknodat",
    "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2", "pwrite64",
    "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "removexattr",
    "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "setxattr", "splice",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask", "unlink", "unlinkat",
    "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice", "write", "writev",
    # waiting for events
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2",
    "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "fanotify_mark", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "poll",
    "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "_newselect", "signalfd",
    "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64",
    # memory and threads
    "arch_prctl", "brk", "futex", "futex_time64", "futex_waitv", "get_robust_list",
    "get_thread_area", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mlock", "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mremap", "msync",
    "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages", "rseq", "set_robust_list", "set_thread_area", "set_tid_address",
    # processes, ids, scheduling, signals, time (reading only)
    "alarm", "capget", "capset", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "execve", "execveat", "exit",
    "exit_group", "fork", "getcpu", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getitimer", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "getrusage", "getsid", "gettid", "gettimeofday", "getuid",
    "getuid32", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "nanosleep", "nice", "pause",
    "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "restart_syscall", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "setsid", "setuid", "setuid32", "sigaltstack", "signal", "sigprocmask",
    "sigreturn", "sigsuspend", "sysinfo", "tgkill", "time", "times", "tkill", "uname", "vfork",
    "wait4", "waitid", "waitpid",
    # IPC (namespaced)
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "msgctl",
    "msgget", "msgrcv", "msgsnd", "pipe", "pipe2", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    # sockets (namespaced by the network namespace)
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
    "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg",
    "sendmsg", "sendto", "setsockopt", "shutdown", "socket", "socketcall", "socketpair",
    # terminals and devices (the device cgroup and node permissions guard these)
    "ioctl",
    # newer kernels: page-cache stats, futex2, memory sealing, reaping a killed process
    "cachestat", "futex_requeue", "futex_wait", "futex_wake", "mseal", "process_mrelease",
    # architecture-specific helpers (unknown names elsewhere are ignored)
    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
    "set_tls", "riscv_flush_icache",
]

# Allowed only when the container holds the capability: each is either
# useless without it (the kernel checks it too) or dangerous outside a
# namespace the kernel does not provide.
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": [
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "pivot_root", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
        "swapoff", "swapon", "umount", "umount2", "unshare",
    ],
    "CAP_SYS_BOOT": ["kexec_file_load", "kexec_load", "reboot"],
    "CAP_SYS_CHROOT": ["chroot"],
    "CAP_SYS_MODULE": ["delete_module", "finit_module", "init_module"],
    "CAP_SYS_PACCT": ["acct"],
    "CAP_SYS_PTRACE": [
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace", "userfaultfd",
    ],
    "CAP_SYS_RAWIO": ["ioperm", "iopl"],
    "CAP_SYS_TIME": [
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64",
        "settimeofday", "stime",
    ],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYS_NICE": ["get_mempolicy", "mbind", "migrate_pages", "move_pages", "set_mempolicy"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
    "CAP_DAC_READ_SEARCH": ["name_to_handle_at", "open_by_handle_at"],
}
# Never allowed, whatever the capabilities: not namespaced at all.
# keyctl/add_key/request_key (the kernel keyring) and the obsolete
# syscalls (create_module, nfsservctl, uselib, ustat, _sysctl, vm86 ...)
# are simply absent from every list above, so defaultAction refuses them.

# clone(2) flags that create namespaces; without CAP_SYS_ADMIN clone is
# allowed only when none is set (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|
# NEWUSER|NEWPID|NEWNET), and clone3 fails with ENOSYS so libc falls back
# to clone, whose flags a filter can see (clone3 passes them in memory).
CLONE_NAMESPACE_FLAGS = 0x7E020000
CLONE_NEWUSER = 0x10000000
ENOSYS = 38

# personality(2) values a program may set: PER_LINUX, PER_LINUX32,
# UNAME26, PER_LINUX32|UNAME26, and 0xffffffff (query only).
PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]

_ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
}

#: Docker's default capability set: the default when no names are given.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]


def _allow(names: list[str], args: list[dict] | None = None) -> dict:
    rule = {"names": sorted(set(names)), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = args
    return rule


def profile(capabilities: list[str] | None = None) -> dict:
    """The profile for a container holding `capabilities` (default: Docker's set)."""
    caps = {c.upper() for c in (DEFAULT_CAPS if capabilities is None else capabilities)}
    rules = [_allow(ALLOWED)]
    for value in PERSONALITIES:
        rules.append(_allow(["personality"], [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]))
    gated = sorted({name for cap in caps for name in BY_CAPABILITY.get(cap, [])})
    if gated:
        rules.append(_allow(gated))
    if "CAP_SYS_ADMIN" not in caps:
        # s390 passes clone's flags second; everywhere else first.
        index = 1 if os.uname().machine == "s390x" else 0
        rules.append(_allow(["clone"], [
            {"index": index, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
             "op": "SCMP_CMP_MASKED_EQ"}]))
        rules.append(_allow(["unshare"], [
            {"index": 0, "value": CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]))
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,  # EPERM
        "architectures": _ARCHES.get(os.uname().machine, []),
        "syscalls": rules,
    }
