"""Full VMs and the disk <-> image directions, through the `ketch` CLI.

One full boot (q35, SeaBIOS, the busybox image's own init running a command
and powering off); the disk import needs no boot."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import command
from tests.integration.vm.conftest import need_vm, vm_processes


def _ketch(*args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 240)
    return subprocess.run([command("ketch"), *args], **kw)


def test_vm_full_vm_boots_its_own_init(ketch_env, tmp_path: Path):
    need_vm()
    assert _ketch("bootstrap", "busybox").returncode == 0
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in").write_text("shared with the VM\n")
    r = _ketch("vm", "create", "--name", "fv", "--memory", "256m", "--disk", "512m",
               "-v", f"{vol}:/vol", "busybox",
               "sh", "-c", "echo hello from $(hostname); uname -r; cat /vol/in; exit 4")
    assert r.returncode == 0, r.stderr
    try:
        r = _ketch("vm", "ls", "-a", "--format", "{{.Name}} {{.Status}}")
        assert r.stdout == b"fv stopped\n"
        r = _ketch("vm", "start", "--attach", "fv")
        assert r.returncode == 4, r.stdout[-2000:]
        out = r.stdout.decode(errors="replace")
        assert "hello from fv" in out
        assert "shared with the VM" in out
        from ketch.vm import kernel
        assert kernel.current().release in out
        assert _ketch("vm", "create", "--name", "fv", "busybox").returncode == 125
    finally:
        _ketch("vm", "rm", "-f", "fv")
    assert _ketch("vm", "ls", "-a", "--format", "{{.Name}}").stdout == b""
    assert vm_processes(str(tmp_path)) == []


def _partitioned_disk(tmp_path: Path) -> Path:
    """An MBR disk whose one Linux partition, at 1 MiB, holds an ext4 tree."""
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "etc").mkdir()
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    (tree / "bin" / "sh").symlink_to("busybox")
    (tree / "etc" / "hello").write_text("lifted\n")
    part = tmp_path / "part.img"
    with open(part, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(part)], check=True)
    disk = tmp_path / "disk.raw"
    mbr = bytearray(512)
    struct.pack_into("<B3xBxxxII", mbr, 0x1BE, 0x00, 0x83, 2048, (32 << 20) // 512)
    mbr[0x1FE:0x200] = b"\x55\xaa"
    with open(disk, "wb") as f:
        f.write(mbr)
        f.seek(1 << 20)
        f.write(part.read_bytes())
    qcow = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow)], check=True)
    return qcow


def test_vm_import_disk_lifts_a_vm_disk_into_an_image(ketch_env, tmp_path: Path):
    for tool in ("mkfs.ext4", "debugfs", "qemu-img"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"needs {tool}")
    qcow = _partitioned_disk(tmp_path)
    r = _ketch("image", "import-disk", str(qcow), "lifted:v1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"sha256:")
    r = _ketch("run", "--rm", "lifted:v1", "/bin/sh", "-c", "cat /etc/hello")
    assert (r.returncode, r.stdout) == (0, b"lifted\n"), r.stderr
    r = _ketch("vm", "import-disk", str(tmp_path / "missing.img"), "x:y")
    assert r.returncode == 125
    assert r.stderr.decode().strip() == f"ketch: disk '{tmp_path / 'missing.img'}': no such file"


def test_vm_disk_keeps_device_nodes_and_owners(ketch_env, tmp_path: Path):
    """An image with /dev nodes (as mmdebstrap makes) and files of other owners:
    the disk gets the nodes as nodes (never opened and read) and the owners."""
    import os
    import stat

    from ketch.vm import fullvm, kernel
    if kernel.current() is None:
        pytest.skip("no guest kernel installed (ketch vm kernel --install)")
    debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
    root = tmp_path / "rootfs"
    (root / "sbin").mkdir(parents=True)
    (root / "dev").mkdir()
    shutil.copy2("/bin/busybox", root / "sbin" / "init")
    os.mknod(root / "dev" / "console", 0o600 | stat.S_IFCHR, os.makedev(5, 1))
    (root / "owned").write_text("x")
    os.chown(root / "owned", 1234, 5678)
    out = tmp_path / "disk.img"
    fullvm.build_disk(root, fullvm.VmSpec(name="t", disk_bytes=512 << 20), out)
    console = subprocess.run([debugfs, "-R", "stat /dev/console", str(out)],
                             capture_output=True, text=True).stdout
    assert "Type: character special" in console and "Device major/minor number: 05:01" in console
    owned = subprocess.run([debugfs, "-R", "stat /owned", str(out)],
                           capture_output=True, text=True).stdout
    assert "User:  1234" in owned and "Group:  5678" in owned
    assert not (tmp_path / "staging").exists()
