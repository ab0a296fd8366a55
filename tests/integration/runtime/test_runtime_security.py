"""Regression tests for the runc CVE classes: fd leaks, /proc/self/exe, mount escapes."""

from __future__ import annotations

import os
import subprocess
import sys


def test_no_host_fd_leaks_into_container(runc, bundle, tmp_path):
    """CVE-2024-21626 class: an inheritable host fd must not reach the process."""
    secret = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)  # like a leaked cgroup dir fd
    os.set_inheritable(secret, True)
    try:
        bundle.process["args"] = ["sh", "-c", "ls /proc/self/fd; readlink /proc/self/cwd"]
        proc = runc.run(bundle, pass_fds=(secret,))
    finally:
        os.close(secret)
    assert proc.returncode == 0, proc.stderr
    *fds, cwd = proc.stdout.split()
    assert sorted(fds) == ["0", "1", "2", "3"]  # 3 is ls's own directory handle
    assert cwd == "/"


def test_preserve_fds_passes_exactly_those(runc, bundle, tmp_path):
    (tmp_path / "note").write_text("kept\n")
    bundle.process["args"] = ["sh", "-c", "cat <&3; ls /proc/self/fd"]
    bundle.save()
    # A shell opens fd 3 for ketch-runc: this process's own fd 3 is not ours to touch.
    proc = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(tmp_path / "note"),
                           runc.exe, "--root", runc.root, "run", "--preserve-fds", "1",
                           "--bundle", str(bundle.path), "c1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["kept", "0", "1", "2", "3", "4"]  # 4: ls's directory


def test_init_runs_from_a_sealed_copy_not_the_host_interpreter(runc, bundle):
    """CVE-2019-5736 class: /proc/<init>/exe must not lead to the host's interpreter."""
    bundle.process["args"] = ["true"]
    bundle.save()
    runc("create", "--bundle", str(bundle.path), "c1", check=True)
    try:
        pid = runc.state("c1")["pid"]
        link = os.readlink(f"/proc/{pid}/exe")
        assert link.startswith("/memfd:ketch-runc-init"), link
        st = os.stat(f"/proc/{pid}/exe")
        host = os.stat(os.path.realpath(sys.executable))
        assert st.st_nlink == 0 and (st.st_dev, st.st_ino) != (host.st_dev, host.st_ino)
        # The copy is sealed: even through the link nothing can be written to it.
        try:
            fd = os.open(f"/proc/{pid}/exe", os.O_WRONLY | os.O_APPEND)
        except OSError:
            pass
        else:
            try:
                try:
                    written = os.write(fd, b"x")
                except OSError:
                    written = 0
                assert written == 0
            finally:
                os.close(fd)
    finally:
        runc("delete", "--force", "c1", check=True)


def test_mount_destination_symlink_cannot_escape_rootfs(runc, bundle, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    rootfs = bundle.path / "rootfs"
    os.symlink(str(outside), rootfs / "evil")           # absolute host path
    os.symlink("../../../../../../..", rootfs / "up")   # climbing
    bundle.config["mounts"] += [
        {"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/up/y", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
    ]
    bundle.process["args"] = ["sh", "-c", "grep -c tmpfs /proc/self/mountinfo"]
    proc = runc.run(bundle)
    assert proc.returncode == 0, proc.stderr
    assert not (outside / "x").exists()
    assert (rootfs / str(outside).lstrip("/") / "x").is_dir()  # it landed inside
    assert (rootfs / "y").is_dir()
