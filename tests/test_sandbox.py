"""The bwrap command line, checked as data without running bwrap."""

from __future__ import annotations

from pathlib import Path

import pytest

from runimage import cli, homes, sandbox, userns, workdir
from runimage.log import Die
from runimage.settings import Identity, Paths

SWITCHES = (
    "NO_CAP", "UNSHARE_PIDS", "UNSHARE_USERS", "UNSHARE_DBUS", "UNSHARE_UDEV", "UNSHARE_MODULES",
    "UNSHARE_DEF_MOUNTS", "UNSHARE_LOCALTIME", "SHARE_SYSTEMD", "NO_NET", "SANDBOX_NET",
    "NO_RUNDIR_BIND", "ALLOW_BG", "TMPDIR", "XAUTHORITY", "RUN_SHELL", "AUTORUN",
)  # fmt: skip


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUIET_MODE", "1")


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    rundir = tmp_path / "RunDir"
    (rundir / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (rundir / "rootfs" / "etc").mkdir()
    return Paths({"RUNDIR": str(rundir), "RUNSRC": str(rundir / "Run"), "PATH": "/usr/bin"})


def build(paths: Paths, suid: bool = False) -> sandbox.BwrapCommand:
    scratch: list[str] = []
    command = sandbox.build("/bwrap", suid, paths, Identity(), ["/bin/sh"], scratch)
    for path in scratch:
        Path(path).unlink()
    return command


def pairs(options: list[str], flag: str) -> list[str]:
    """The first argument of each occurrence of flag."""
    return [options[i + 1] for i, option in enumerate(options) if option == flag]


def test_rootfs_is_root_and_argv_ends_with_command(paths: Paths) -> None:
    argv = build(paths).argv(["echo", "hi"])
    assert argv[:4] == ["/bwrap", "--bind-try", paths.rootfs, "/"]
    assert argv[-2:] == ["echo", "hi"]


def test_capabilities_default_drop_sys_nice(paths: Paths) -> None:
    options = build(paths).options
    assert pairs(options, "--cap-add") == ["ALL"]
    assert pairs(options, "--cap-drop") == ["CAP_SYS_NICE"]


def test_no_cap_drops_all(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_CAP", "1")
    options = build(paths).options
    assert pairs(options, "--cap-drop") == ["ALL"]
    assert "--cap-add" not in options


def test_setuid_bwrap_drops_all(paths: Paths) -> None:
    assert pairs(build(paths, suid=True).options, "--cap-drop") == ["ALL"]


def test_unshare_pids(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--unshare-pid" not in build(paths).options
    monkeypatch.setenv("UNSHARE_PIDS", "1")
    assert "--unshare-pid" in build(paths).options


def test_die_with_parent_unless_allow_bg(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--die-with-parent" in build(paths).options
    monkeypatch.setenv("ALLOW_BG", "1")
    assert "--die-with-parent" not in build(paths).options


def test_no_net_unshares_network(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--share-net" in build(paths).options
    monkeypatch.setenv("NO_NET", "1")
    options = build(paths).options
    assert "--unshare-net" in options and "/etc/resolv.conf" not in options


def test_default_mounts_and_unshare(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "/mnt" in pairs(build(paths).options, "--bind-try")
    monkeypatch.setenv("UNSHARE_DEF_MOUNTS", "1")
    binds = pairs(build(paths).options, "--bind-try")
    assert "/mnt" not in binds and "/media" not in binds and "/run/media" not in binds


def test_modules_and_localtime_switches(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = pairs(build(paths).options, "--ro-bind-try")
    assert "/etc/localtime" in ro
    monkeypatch.setenv("UNSHARE_MODULES", "1")
    monkeypatch.setenv("UNSHARE_LOCALTIME", "1")
    options = build(paths).options
    assert "/usr/lib/modules" not in options and "/etc/localtime" not in options


def test_unshare_users_binds_rootfs_accounts(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    (Path(paths.rootfs) / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    monkeypatch.setenv("UNSHARE_USERS", "1")
    scratch: list[str] = []
    options = sandbox.build("/bwrap", False, paths, Identity(), ["/bin/sh"], scratch)
    who = Identity()
    passwd = next(p for p in scratch if ".passwd." in p)
    lines = Path(passwd).read_text().splitlines()
    assert lines[0] == "root:x:0:0::/root:/bin/sh" or who.uid == 0
    assert any(line.startswith(f"{who.user}:x:{who.uid}:") for line in lines)
    assert "--unshare-user-try" in options.options
    for path in scratch:
        Path(path).unlink()


def test_rundir_bind_and_environment(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    command = build(paths)
    assert [paths.rundir, "/var/RunDir"] in [
        command.options[i + 1 : i + 3] for i, o in enumerate(command.options) if o == "--bind-try"
    ]
    assert command.env["RUNDIR"] == "/var/RunDir"
    assert command.env["INSIDE_RUNIMAGE"] == "1"
    assert command.env["PATH"].endswith(":/var/RunDir/static")
    monkeypatch.setenv("NO_RUNDIR_BIND", "1")
    command = build(paths)
    assert "/var/RunDir" not in command.options
    assert "RUNDIR" not in command.env or command.env["RUNDIR"] != "/var/RunDir"


def test_tool_variables_name_the_tools_as_seen_inside(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packed, the RunDir's host path is a mount point in TMPDIR that the container may not
    see: BWRAP, MKSQFS, ... name the tools under /var/RunDir; a host tool keeps its path."""
    monkeypatch.setenv("MKSQFS", f"{paths.rundir}/static/mksquashfs")
    monkeypatch.setenv("BWRAP", "/usr/bin/bwrap")
    env = build(paths).env
    assert env["MKSQFS"] == "/var/RunDir/static/mksquashfs"
    assert env["BWRAP"] == "/usr/bin/bwrap"
    monkeypatch.setenv("NO_RUNDIR_BIND", "1")
    assert build(paths).env["MKSQFS"] == f"{paths.rundir}/static/mksquashfs"


def test_private_launcher_variables_do_not_leak(
    paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNSRC", "/x/Run")
    assert "RUNSRC" not in build(paths).env


def test_search_path_has_no_duplicates_or_empty_parts() -> None:
    path = sandbox.search_path("/home/u", "/usr/bin::/opt/x/bin:/bin")
    parts = path.split(":")
    assert "" not in parts
    assert len(parts) == len(set(parts))
    assert parts.index("/home/u/.local/bin") == 0 and "/opt/x/bin" in parts


def test_home_under_home_is_seamless() -> None:
    home = homes.seamless("/home/alice", "alice", 1000)
    assert home.path == "/home/alice"
    assert home.options[:3] == ["--bind-try", "/home", "/home"]
    assert "--tmpfs" in home.options and "/root" in home.options


def test_home_outside_home_is_bound_to_home_user() -> None:
    home = homes.seamless("/var/lib/alice", "alice", 1000)
    assert home.path == "/home/alice"
    assert home.options[-3:] == ["--bind-try", "/var/lib/alice", "/home/alice"]
    assert home.options[:2] == ["--tmpfs", "/home"]


@pytest.mark.parametrize("top", ["/tmp/h", "/mnt/h", "/media/h", "/run/h"])
def test_home_in_shared_places_keeps_its_path(top: str) -> None:
    assert homes.seamless(top, "alice", 1000).path == top


def test_symlinked_home_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert homes.seamless(str(link), "alice", 1000).path == str(real)
    assert homes.seamless(f"{link}/", "alice", 1000).path == str(real)


def test_tmpdir_through_a_symlink_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    env = {"TMPDIR": str(link)}
    sandbox.tmpdir(env, home_shared=True)
    assert env["TMPDIR"] in (str(real.resolve()), sandbox.TMPDIR_INSIDE)
    assert env["TMPDIR"] != str(link)


def test_xauthority_moves_with_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XAUTHORITY", "/var/lib/alice/.Xauthority")
    home = homes.seamless("/var/lib/alice", "alice", 1000)
    assert home.xauthority == "/home/alice/.Xauthority"


@pytest.mark.parametrize(
    ("argument", "mode"),
    [
        ("--run-shell", True), ("--rS", True), ("--overfs-list", True), ("--oL", True),
        ("--run-xyz", True), ("--ro-bind", False), ("--remount-ro", False), ("--bind", False),
        ("ls", False), ("--rx", False),
    ],
)  # fmt: skip
def test_is_mode(argument: str, mode: bool) -> None:
    assert cli.is_mode(argument) is mode


def test_default_shell_prefers_bash_rcfile(paths: Paths) -> None:
    bindir = Path(paths.rootfs) / "usr" / "bin"
    (bindir / "sh").touch()
    assert cli.default_shell(paths.rootfs) == ["/usr/bin/sh"]
    (bindir / "bash").touch()
    assert cli.default_shell(paths.rootfs) == ["/usr/bin/bash", "--rcfile", "/etc/bash.bashrc"]
    (bindir / "zsh").touch()
    assert cli.default_shell(paths.rootfs) == ["/usr/bin/zsh"]


def test_run_shell_variable_is_split(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_SHELL", "/usr/bin/bash --norc")
    assert cli.default_shell(paths.rootfs) == ["/usr/bin/bash", "--norc"]


def test_autorun_from_link_name(tmp_path: Path) -> None:
    (tmp_path / "rootfs" / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "rootfs" / "usr" / "bin" / "htop").touch()
    link = Paths({"RUNSRC": str(tmp_path / "htop"), "RUNDIR": str(tmp_path)})
    assert cli.autorun_command(link) == ["htop"]
    renamed = Paths({"RUNSRC": str(tmp_path / "mycontainer"), "RUNDIR": str(tmp_path)})
    assert cli.autorun_command(renamed) == []
    own = Paths({"RUNSRC": str(tmp_path / "runimage-x"), "RUNDIR": str(tmp_path)})
    assert cli.autorun_command(own) == []


@pytest.mark.parametrize(
    ("setting", "value", "name"),
    [
        ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone"),
        ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces"),
        ("/proc/sys/kernel/userns_restrict", "1", "kernel.userns_restrict"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
            "kernel.apparmor_restrict_unprivileged_userns",
        ),
    ],
)
def test_userns_blocker_is_named_with_fix(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str, name: str
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(userns, "read_text", lambda path: value if path == setting else "")
    with pytest.raises(Die) as raised:
        userns.check(setuid_bwrap=False)
    assert name in raised.value.message
    assert f"sysctl -w {name}=" in raised.value.hint


def test_userns_allowed_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr(userns, "read_text", lambda path: "1" if "max_user" in path else "")
    userns.check(setuid_bwrap=False)


def test_workdir_understands_every_option_of_the_launcher(paths: Paths) -> None:
    options = build(paths).options
    found, chooses, end = workdir.mounts([*options, "program", "--bind", "/x", "/y"])
    assert end == len(options) and not chooses
    assert ("/", paths.rootfs) in found and ("/tmp", "/tmp") in found
