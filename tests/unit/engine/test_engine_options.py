"""Flag parsing (engine/options.py) and config.json generation (engine/spec.py), no root."""

from __future__ import annotations

import pytest

from ketch.engine import options as o
from ketch.engine import spec, usermap
from ketch.errors import InvalidArgument


def test_sizes_cpus_durations_ulimits_restart():
    assert o.parse_bytes("512m") == 512 << 20
    assert o.parse_bytes("1g") == 1 << 30
    assert o.parse_bytes("1024") == 1024
    with pytest.raises(InvalidArgument, match="12q"):
        o.parse_bytes("12q")
    assert o.parse_memory_swap("-1") == -1
    assert o.parse_duration("1m30s", "--x") == 90 * 10**9
    with pytest.raises(InvalidArgument, match="10 parsecs"):
        o.parse_duration("10 parsecs", "--x")
    assert o.parse_ulimit("nofile=1024:2048") == ("nofile", (1024, 2048))
    with pytest.raises(InvalidArgument, match="soft limit"):
        o.parse_ulimit("nofile=10:5")
    assert o.parse_restart("on-failure:3") == ("on-failure", 3)
    with pytest.raises(InvalidArgument):
        o.parse_restart("always:3")


def test_volume_and_mount_specs(tmp_path):
    m = o.parse_volume(f"{tmp_path}:/app:ro")
    assert (m.type, m.source, m.target, m.readonly) == ("bind", str(tmp_path), "/app", True)
    assert o.parse_volume("data:/data").type == "volume"
    assert o.parse_volume("/anon").source == ""
    with pytest.raises(InvalidArgument, match="absolute"):
        o.parse_volume("data:rel")
    t = o.parse_mount("type=tmpfs,target=/t,tmpfs-size=1m")
    assert t.options == [f"size={1 << 20}"]
    with pytest.raises(InvalidArgument, match="does not exist"):
        o.parse_mount(f"type=bind,source={tmp_path}/missing,target=/x")


def _rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    return str(tmp_path)


def test_user_resolution_in_the_image(tmp_path):
    root = _rootfs(tmp_path)
    u = usermap.resolve(root, "app")
    assert (u.uid, u.gid, u.home, u.additional) == (1000, 1000, "/home/app", [2000])
    assert usermap.resolve(root, "1000:extra").spec() == {"uid": 1000, "gid": 2000}
    assert usermap.resolve(root, "4242").uid == 4242
    with pytest.raises(InvalidArgument, match="ghost"):
        usermap.resolve(root, "ghost")


def test_symlinks_in_the_rootfs_cannot_escape(tmp_path):
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("/../../../../etc/shadow-nowhere")
    assert usermap.in_root(str(root), "/etc/passwd") == str(root / "etc" / "shadow-nowhere")


def test_config_has_docker_defaults_and_flag_effects(tmp_path):
    root = _rootfs(tmp_path)
    opts = o.CreateOptions(image="x", command=["echo", "hi"], memory=512 << 20,
                           memory_swap=1 << 30, cpus=1.5, user="app", read_only=True,
                           no_new_privileges=True, cap_drop=["NET_RAW"], seccomp="unconfined",
                           env=["A=2"])
    img = {"config": {"Env": ["A=1", "B=1"], "WorkingDir": "/w", "Entrypoint": ["/e"]}}
    cfg = spec.build("f" * 64, opts, img, root, [], "ffffffffffff")
    p = cfg["process"]
    assert p["args"] == ["/e", "echo", "hi"] and p["cwd"] == "/w"
    assert "A=2" in p["env"] and "B=1" in p["env"] and "HOSTNAME=ffffffffffff" in p["env"]
    assert p["user"]["uid"] == 1000 and p["noNewPrivileges"] is True
    assert "CAP_NET_RAW" not in p["capabilities"]["bounding"]
    assert len(p["capabilities"]["bounding"]) == len(spec.DEFAULT_CAPS) - 1
    assert cfg["root"]["readonly"] is True
    lin = cfg["linux"]
    assert lin["cgroupsPath"].endswith("/" + "f" * 64)
    assert lin["resources"]["memory"] == {"limit": 512 << 20, "swap": 1 << 30}
    assert lin["resources"]["cpu"] == {"period": 100000, "quota": 150000}
    assert "/proc/timer_list" in lin["maskedPaths"] and "seccomp" not in lin
    shm = next(m for m in cfg["mounts"] if m["destination"] == "/dev/shm")
    assert "size=65536k" in shm["options"]


def test_entrypoint_flag_drops_image_cmd_and_empty_command_is_refused():
    img = {"Entrypoint": ["/e"], "Cmd": ["default"]}
    assert spec.process_args(o.CreateOptions(entrypoint=["/x"]), img) == ["/x"]
    assert spec.process_args(o.CreateOptions(), img) == ["/e", "default"]
    with pytest.raises(InvalidArgument, match="no command"):
        spec.process_args(o.CreateOptions(entrypoint=[]), {})
