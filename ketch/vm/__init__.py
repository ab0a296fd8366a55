"""ketch.vm: OCI bundles in QEMU micro-VMs, behind runc's command line; and full VMs.

    runv.py        `ketch-runv`: create/start/state/kill/delete/run/exec, as runc
    container.py   the OCI lifecycle and state directory of one micro-VM
    shim.py        the per-VM host process: QEMU + virtiofsd, stdio relay, control socket
    execclient.py  `ketch-runv exec`
    spec.py        config.json -> plan (resources, mounts, annotations; see there)
    proto.py       the host side of the guest agent's frames
    guest/         the guest's PID 1 (init.c) and agent (agent.c), static C
    kernel.py      the guest kernel: apt-get download, vmlinux from the bzImage, modules
    initramfs.py   base initramfs (cached) + per-run archive; cpio.py writes newc
    rootfs.py      erofs image of a rootfs, cached per image
    snapshot.py    boot once per machine shape, restore per run (TCG)
    qemu.py        the microvm command line; accel.py picks KVM or TCG
    fullvm.py      full VMs (disk from an image, own init); disk.py reads VM disks

Annotations an engine sets on the bundle (details in spec.py):
    ketch.vm.image-id   the rootfs is this image, unchanged (erofs cache key)
    ketch.vm.network    "user" (default) or "none"
    ketch.vm.ports      QEMU hostfwd rules for published ports
Environment: KETCH_VM_CACHE (kernel, initramfs, erofs cache), KETCH_VM_KERNEL /
KETCH_VM_MODULES (own kernel), KETCH_VM_ACCEL=kvm|tcg, KETCH_VM_BOOT_DEADLINE,
KETCH_RUNV_ROOT (state root when --root is not given), KETCH_VM_BALLOON=0,
KETCH_VM_TCG_TB_SIZE (MiB of TCG translation buffer), KETCH_VM_SNAPSHOT=0 (always
boot, never restore a snapshot).
"""
