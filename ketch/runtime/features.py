"""`ketch-runc features`: what this runtime implements, as runtime-spec features.md JSON."""

from __future__ import annotations

from ketch.oci.runtime_spec import HOOKS, NAMESPACES, VERSION
from ketch.runtime.rootfs import _FLAGS, PROPAGATION


def features() -> dict:
    from ketch.runtime import caps
    options = sorted(set(_FLAGS) | set(PROPAGATION) | {"tmpcopyup"})
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": VERSION,
        "hooks": list(HOOKS),
        "mountOptions": options,
        "linux": {
            "namespaces": list(NAMESPACES),
            "capabilities": sorted(caps.CAPS, key=caps.CAPS.get),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.opencontainers.runc.version": "ketch-runc"},
    }
