"""Regression tests for the runc CVE classes: fd leaks, /proc/self/exe, mount escapes."""

from __future__ import annotations

import errno
import os
import shutil
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


def test_no_cwd_through_an_fd_of_init_leads_out_of_the_root(runc, bundle, tmp_path):
    """CVE-2024-21626 class, init's own fds: whatever init holds open until execve (a
    directory of the host's cgroup tree, say), a cwd of /proc/self/fd/N must not put
    the process outside its root. Probed by reading a marker file the host made."""
    marker = tmp_path / "host-marker"
    marker.write_text("host side\n")
    climb = "../" * 12 + str(marker).lstrip("/")
    bundle.process["args"] = ["sh", "-c", f"cat {climb} 2>/dev/null; echo done"]
    escaped = []
    for n in range(3, 11):
        bundle.process["cwd"] = f"/proc/self/fd/{n}"
        proc = runc.run(bundle, f"fd{n}")
        runc("delete", "--force", f"fd{n}")
        if "host side" in proc.stdout:
            escaped.append(n)
    assert escaped == []
    # exec too: its process is cloned by a stage 1 that held host directories open.
    bundle.process.update(cwd="/", args=["sleep", "60"])
    bundle.save()
    runc("run", "-d", "--bundle", str(bundle.path), "x1", check=True)
    try:
        for n in range(3, 11):
            proc = runc("exec", "--cwd", f"/proc/self/fd/{n}", "x1", "sh", "-c",
                        f"cat {climb} 2>/dev/null; echo done")
            if "host side" in proc.stdout:
                escaped.append(f"exec {n}")
    finally:
        runc("delete", "--force", "x1", check=True)
    assert escaped == []


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


def _cannot_open_for_writing(path: str) -> bool:
    """Open for append and write nothing: True if the kernel refuses the open."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return True
    os.close(fd)
    return False


def test_init_runs_from_a_protected_view_of_the_interpreter(runc, bundle):
    """CVE-2019-5736 class: /proc/<init>/exe must not lead to a writable host interpreter.

    init runs from a read-only detached bind mount of the binary (or, where that
    cannot be made, a sealed memfd copy): a path kept to it cannot be reopened
    for writing, whoever else runs the file."""
    bundle.process["args"] = ["true"]
    bundle.save()
    runc("create", "--bundle", str(bundle.path), "c1", check=True)
    try:
        pid = runc.state("c1")["pid"]
        exe = f"/proc/{pid}/exe"
        link = os.readlink(exe)
        if link.startswith("/memfd:"):
            assert link.startswith("/memfd:ketch-runc-init"), link
            assert os.stat(exe).st_nlink == 0
        else:
            # A bind mount of the file itself: its root is the file.
            assert link == "/", link
            assert os.statvfs(exe).f_flag & os.ST_RDONLY, "init's executable is on a writable mount"
            host = os.stat(os.path.realpath(sys.executable))
            st = os.stat(exe)
            assert (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino)
        assert _cannot_open_for_writing(exe)
    finally:
        runc("delete", "--force", "c1", check=True)


def test_readonly_view_refuses_writes_once_nothing_runs_it(tmp_path):
    """The attack proper reopens the path once no process executes the binary any
    more (so ETXTBSY no longer stands in the way): through the view, EROFS."""
    from ketch.runtime import spawn
    probe = tmp_path / "python"
    shutil.copy2(os.path.realpath(sys.executable), probe)   # a binary nobody runs
    view = spawn.readonly_interpreter(str(probe))
    try:
        ran = subprocess.run([f"/proc/self/fd/{view}", "-I", "-S", "-c", "print('ran')"],
                             pass_fds=(view,), capture_output=True, text=True, timeout=30)
        assert ran.stdout == "ran\n", ran.stderr
        assert not _cannot_open_for_writing(str(probe))   # the file itself is writable
        try:
            os.open(f"/proc/self/fd/{view}", os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            assert exc.errno == errno.EROFS
        else:
            raise AssertionError("the read-only view opened for writing")
    finally:
        os.close(view)


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
