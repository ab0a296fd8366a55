"""cp (both directions and tar streams), diff, commit, export, pause, stats, top, rename."""

from __future__ import annotations

import io
import tarfile


def test_files_in_and_out_diff_commit_export(ketch, busybox, tmp_path):
    ketch("run", "-d", "--name", "box", "--network", "none", busybox, "sh", "-c",
          "mkdir /work && echo data > /work/f && exec sleep 60")
    try:
        ketch("exec", "box", "true")   # started: /work exists by now
        ketch("cp", "box:/work/f", str(tmp_path / "f"))
        assert (tmp_path / "f").read_text() == "data\n"
        (tmp_path / "in.txt").write_text("from host")
        ketch("cp", str(tmp_path / "in.txt"), "box:/work/")
        assert ketch("exec", "box", "cat", "/work/in.txt").stdout == "from host"
        tar = ketch.popen("cp", "box:/work", "-", stdout=-1).communicate()[0]
        names = tarfile.open(fileobj=io.BytesIO(tar.encode())).getnames()
        assert sorted(names) == ["work", "work/f", "work/in.txt"]
        diff = ketch("diff", "box").stdout.splitlines()
        assert "A /work/f" in diff and "A /work/in.txt" in diff
        assert not any(line.endswith("/etc/hosts") for line in diff)
        ketch("pause", "box")
        assert ketch("inspect", "-f", "{{.State.Status}}", "box").stdout.strip() == "paused"
        ketch("unpause", "box")
        stats = ketch("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "box").stdout
        assert stats.split() == ["box", "1"]
        assert "sleep 60" in ketch("top", "box").stdout
        image = ketch("commit", "box", "snap:1").stdout.strip()
        assert image.startswith("sha256:")
        ketch("rename", "box", "box2")
        exported = tmp_path / "box.tar"
        ketch("export", "-o", str(exported), "box2")
        assert "work/in.txt" in tarfile.open(exported).getnames()
    finally:
        ketch("rm", "-f", "box", "box2", check=False)
    out = ketch("run", "--rm", "--network", "none", "snap:1", "cat", "/work/in.txt").stdout
    assert out == "from host"


def test_update_limits_and_restart_command(ketch, busybox):
    ketch("run", "-d", "--name", "upd", "--network", "none", busybox, "sleep", "60")
    try:
        ketch("update", "--memory", "100m", "--pids-limit", "50", "--restart", "always", "upd")
        doc = ketch("inspect", "-f",
                    "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} "
                    "{{.HostConfig.RestartPolicy.Name}} {{.State.StartedAt}}", "upd")
        memory, pids, policy, started = doc.stdout.split()
        assert (memory, pids, policy) == (str(100 << 20), "50", "always")
        # The running container's cgroup has the new limits (read from inside it).
        script = ('p=$(grep -E ":memory:" /proc/self/cgroup | cut -d: -f3); '
                  'for d in /sys/fs/cgroup/memory$p /sys/fs/cgroup/memory; do '
                  '[ -e $d/memory.limit_in_bytes ] && { cat $d/memory.limit_in_bytes; break; }; '
                  'done')
        if ketch("exec", "upd", "test", "-d", "/sys/fs/cgroup/memory", check=False).returncode == 0:
            assert ketch("exec", "upd", "sh", "-c", script).stdout.strip() == str(100 << 20)
        ketch("restart", "-t", "1", "upd")
        again = ketch("inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", "upd")
        status, started2 = again.stdout.split()
        assert status == "running" and started2 != started
    finally:
        ketch("rm", "-f", "upd")
