"""End-to-end runs of the unpacked RunDir with the Debian rootfs, as an ordinary user."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import clean_env, run, rundir_copy, wait_until_gone

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("status", [0, 1, 7])
def test_exit_status_comes_back(run_entry: Path, status: int) -> None:
    result = run(run_entry, "sh", "-c", f"exit {status}")
    assert result.returncode == status, result.stderr


def test_death_by_sigint_is_130(run_entry: Path) -> None:
    result = run(run_entry, "sh", "-c", "kill -INT $$")
    assert result.returncode == 130, result.stderr


def test_sigint_to_launcher_reaches_program(run_entry: Path) -> None:
    launcher = subprocess.Popen(
        [str(run_entry), "sleep", "60"],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(1.5)
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=20) == 130


def test_arguments_arrive_unchanged(run_entry: Path) -> None:
    args = ["two words", 'it\'s "quoted"', "*", "$HOME", "line\nbreak", "", "-c", "--bind"]
    result = run(run_entry, "printf", "%s\\0", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\0")[:-1] == args


def test_os_release_is_debian(run_entry: Path) -> None:
    result = run(run_entry, "cat", "/etc/os-release")
    assert "ID=debian" in result.stdout.splitlines()
    assert "VERSION_CODENAME=bookworm" in result.stdout.splitlines()


def test_python_is_debians(run_entry: Path) -> None:
    result = run(run_entry, "python3", "-c", "import sys; print(sys.version)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3.11.")
    assert "[GCC 12" in result.stdout


def test_pkglist_lists_dpkg_packages(run_entry: Path) -> None:
    result = run(run_entry, "--run-pkglist")
    assert result.returncode == 0, result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"dpkg", "bash", "apt", "python3", "fakeroot"} <= names


def test_short_form_of_pkglist(run_entry: Path) -> None:
    assert run(run_entry, "--rP").stdout == run(run_entry, "--run-pkglist").stdout


def test_binlist_lists_usr_bin(run_entry: Path) -> None:
    result = run(run_entry, "--run-binlist")
    names = result.stdout.split()
    assert "bash" in names and "dpkg" in names
    assert not any("/" in name for name in names)


def test_host_home_and_tmp_are_seen(run_entry: Path, tmp_path: Path) -> None:
    home = Path.home()
    marker_home = home / f".runimage-test-{os.getpid()}"
    marker_home.write_text("home\n")
    marker_tmp = Path("/tmp") / f"runimage-test-{os.getpid()}"
    marker_tmp.write_text("tmp\n")
    try:
        result = run(run_entry, "cat", str(marker_home), str(marker_tmp))
        assert result.stdout == "home\ntmp\n", result.stderr
        assert run(run_entry, "sh", "-c", "echo $HOME").stdout.strip() == str(home)
    finally:
        marker_home.unlink()
        marker_tmp.unlink()


def test_run_shell_runs_bash_with_args(run_entry: Path) -> None:
    result = run(run_entry, "--run-shell", "-c", 'echo "$SHELL:$BASH_VERSION"')
    shell, _, version = result.stdout.strip().partition(":")
    assert shell == "/usr/bin/bash"
    assert version.startswith("5.2")


def test_run_shell_honours_run_shell(run_entry: Path) -> None:
    env = clean_env(RUN_SHELL="/usr/bin/dash")
    result = run(run_entry, "--rS", "-c", 'echo "$SHELL"; readlink /proc/$$/exe', env=env)
    assert result.stdout.split() == ["/usr/bin/dash", "/usr/bin/dash"]


def test_unknown_mode_is_one_clear_error(run_entry: Path) -> None:
    result = run(run_entry, "--run-xyz")
    assert result.returncode == 2
    assert "Unknown option: --run-xyz" in result.stderr
    assert "bwrap" not in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("flag", "expected"), [("--help", "--run-shell"), ("-h", "--run-shell"),
                                               ("--version", "RunImage version:")])  # fmt: skip
def test_common_help_and_version_flags_are_runimages(
    run_entry: Path, flag: str, expected: str
) -> None:
    result = run(run_entry, flag)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and "bwrap" not in result.stdout.split("\n")[0]


def test_no_arguments_prints_help(run_entry: Path) -> None:
    result = run(run_entry)
    assert result.returncode == 0
    assert "--run-shell" in result.stdout and "SANDBOX_NET" in result.stdout


def test_root_is_refused(run_entry: Path) -> None:
    result = subprocess.run(
        ["unshare", "--map-root-user", str(run_entry), "true"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 127
    assert "root user is not allowed" in result.stderr
    assert "ALLOW_ROOT=1" in result.stderr


def test_inside_variables(run_entry: Path) -> None:
    script = "echo $INSIDE_RUNIMAGE $RUNDIR $RUNROOTFS $RUNSTATIC; test $RUNPID -gt 1 && echo ok"
    result = run(run_entry, "sh", "-c", script)
    assert result.stdout.split() == [
        "1", "/var/RunDir", "/var/RunDir/rootfs", "/var/RunDir/static", "ok"
    ]  # fmt: skip


def test_no_rundir_bind_keeps_host_paths(run_entry: Path, rundir: Path) -> None:
    env = clean_env(NO_RUNDIR_BIND="1")
    result = run(
        run_entry, "sh", "-c", "echo $RUNDIR; test -e /var/RunDir/Run || echo none", env=env
    )
    assert result.stdout.split() == [str(rundir.resolve()), "none"]


def test_capabilities_and_no_cap(run_entry: Path) -> None:
    with_caps = run(run_entry, "sh", "-c", "grep CapEff /proc/self/status")
    without = run(run_entry, "sh", "-c", "grep CapEff /proc/self/status", env=clean_env(NO_CAP="1"))
    assert with_caps.stdout.split()[1] != "0000000000000000"
    assert without.stdout.split()[1] == "0000000000000000"


def test_nocap_lets_nested_bwrap_start(run_entry: Path) -> None:
    result = run(run_entry, "nocap", "/var/RunDir/static/bwrap", "--dev-bind", "/", "/", "true")
    assert result.returncode == 0, result.stderr


def test_unshare_pids_hides_host_processes(run_entry: Path) -> None:
    shared = run(run_entry, "sh", "-c", "ls /proc | grep -c '^[0-9]'")
    private = run(
        run_entry, "sh", "-c", "ls /proc | grep -c '^[0-9]'", env=clean_env(UNSHARE_PIDS="1")
    )
    assert int(private.stdout) < 5 < int(shared.stdout)


def test_tmpdir_shared_keeps_its_path(run_entry: Path) -> None:
    outside = Path.home() / f".runimage-tmpdir-{os.getpid()}"
    outside.mkdir()
    try:
        (outside / "probe").write_text("x")
        env = clean_env(TMPDIR=str(outside))
        result = run(run_entry, "sh", "-c", 'echo $TMPDIR; cat "$TMPDIR/probe"', env=env)
        assert result.stdout.split() == [str(outside), "x"]
    finally:
        (outside / "probe").unlink()
        outside.rmdir()


def test_tmpdir_elsewhere_is_bound_privately(run_entry: Path) -> None:
    outside = Path("/var/tmp") / f"runimage-tmpdir-{os.getpid()}"
    outside.mkdir()
    try:
        (outside / "probe").write_text("x")
        existed = os.path.lexists("/tmp/.TMPDIR")
        env = clean_env(TMPDIR=str(outside))
        result = run(run_entry, "sh", "-c", 'echo $TMPDIR; cat "$TMPDIR/probe"', env=env)
        assert result.stdout.split() == ["/run/.TMPDIR", "x"]
        assert os.path.lexists("/tmp/.TMPDIR") == existed
    finally:
        (outside / "probe").unlink()
        outside.rmdir()


@pytest.mark.parametrize("allow_bg", ["0", "1"])
def test_background_processes_are_stopped(run_entry: Path, allow_bg: str) -> None:
    """A daemon the program leaves is stopped when it ends; with ALLOW_BG=1 it goes on."""
    tag = f"runimage-bg-{allow_bg}-{os.getpid()}"
    script = f"setsid bash -c 'exec -a {tag} sleep 300' </dev/null >/dev/null 2>&1 & sleep 0.3"
    result = run(run_entry, "sh", "-c", script, env=clean_env(ALLOW_BG=allow_bg))
    assert result.returncode == 0, result.stderr
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"^{tag} 300$"], capture_output=True, text=True)
    for pid in left.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    assert (left.stdout != "") == (allow_bg == "1")


def test_allow_bg_keeps_background_processes(run_entry: Path) -> None:
    marker = f"/tmp/runimage-allow-bg-{os.getpid()}"
    env = clean_env(ALLOW_BG="1")
    run(run_entry, "sh", "-c", f"(sleep 1; touch {marker}) >/dev/null 2>&1 & exit 0", env=env)
    deadline = time.monotonic() + 10
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert os.path.exists(marker)
    os.unlink(marker)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]


@pytest.mark.parametrize("victim", ["Run", "launcher"])
@pytest.mark.parametrize("trap", ["", "trap '' TERM; "])
def test_killed_launcher_leaves_no_process(run_entry: Path, victim: str, trap: str) -> None:
    """kill -9 of RunDir/Run or of the Python launcher under it: the program and what it
    started in the background end too, also when they ignore SIGTERM."""
    tag = f"runimage-kill-{victim}-{len(trap)}-{os.getpid()}"
    script = f"{trap}(exec -a {tag}-bg sleep 300) & exec -a {tag} sleep 300"
    run_process = subprocess.Popen([str(run_entry), "bash", "-c", script], env=clean_env())
    time.sleep(1.5)
    sleeps = f"^{tag}(-bg)? 300$"
    running = subprocess.run(["pgrep", "-f", sleeps], capture_output=True, text=True)
    assert len(running.stdout.split()) == 2, "both sleeps run before the kill"
    target = run_process.pid if victim == "Run" else _children(run_process.pid)[0]
    os.kill(target, signal.SIGKILL)
    run_process.wait(timeout=30)
    assert wait_until_gone(sleeps, 15) == ""


def test_autorun_by_link_name(run_entry: Path, tmp_path: Path) -> None:
    link = tmp_path / "dpkg-query"
    link.symlink_to(run_entry)
    result = run(link, "--show", "--showformat=${Package}\\n", "dpkg")
    assert result.stdout.strip() == "dpkg", result.stderr


def test_autorun_variable(run_entry: Path) -> None:
    result = run(run_entry, "x y", env=clean_env(AUTORUN="echo from-autorun"))
    assert result.stdout.strip() == "from-autorun x y"


def test_autorun_of_missing_program_is_clear(run_entry: Path) -> None:
    result = run(run_entry, env=clean_env(AUTORUN="no-such-program --flag"))
    assert result.returncode == 127
    assert "Autorun program no-such-program not found in the container's /usr/bin" in result.stderr


def test_renamed_copy_behaves_as_itself(run_entry: Path, tmp_path: Path) -> None:
    link = tmp_path / "my container"
    link.symlink_to(run_entry)
    assert run(link, "echo", "as-itself").stdout.strip() == "as-itself"


def test_version_mode(run_entry: Path) -> None:
    result = run(run_entry, "--run-version")
    assert "RunImage version:" in result.stdout
    assert "RootFS version:" in result.stdout and ".debian." in result.stdout
    assert "RunImage runtime version: " in result.stdout


def test_apt_works_as_fake_root(run_entry: Path, rundir: Path) -> None:
    if not os.access(rundir / "rootfs" / "var" / "lib" / "dpkg", os.W_OK):
        pytest.skip("the rootfs is not writable by this user")
    result = run(run_entry, "sudo", "apt-get", "check")
    assert result.returncode == 0, result.stderr


def test_sys_bwrap_uses_the_hosts(run_entry: Path) -> None:
    env = clean_env(SYS_BWRAP="1")
    result = run(run_entry, "true", env=env)
    assert result.returncode == 0
    assert "The system bwrap is used!" in result.stderr
    assert "system bwrap" not in run(run_entry, "true").stderr


def test_sys_tools_exports_host_paths(run_entry: Path) -> None:
    env = clean_env(SYS_TOOLS="1")
    result = run(run_entry, "sh", "-c", 'echo "$BWRAP $MKSQFS"', env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/usr/bin/bwrap", "/usr/bin/mksquashfs"]
    assert "The system mksquashfs is used!" in result.stderr


def test_runs_with_an_empty_path(run_entry: Path) -> None:
    result = run(run_entry, "sh", "-c", "echo ok", env=clean_env(PATH=""))
    assert result.stdout.strip() == "ok", result.stderr


def test_runtime_options_on_a_rundir_are_explained(run_entry: Path) -> None:
    result = run(run_entry, "--runtime-version")
    assert result.returncode == 2
    assert "option of the packed runimage file" in result.stderr
    assert "bwrap" not in result.stderr


def test_double_dash(run_entry: Path) -> None:
    assert run(run_entry, "--", "echo", "after").stdout.strip() == "after"
    result = run(run_entry, "--")
    assert result.returncode == 2 and "No program given after --" in result.stderr


@pytest.mark.parametrize("name", ["no-such-program-here", "/usr/bin/no-such", ""])
def test_missing_program_is_127(run_entry: Path, name: str) -> None:
    result = run(run_entry, name)
    assert result.returncode == 127
    assert "No such program in the container" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_run_shell_is_127(run_entry: Path) -> None:
    result = run(run_entry, "--run-shell", env=clean_env(RUN_SHELL="nosuchshell"))
    assert result.returncode == 127 and "nosuchshell" in result.stderr


def test_help_and_version_go_to_stdout(run_entry: Path) -> None:
    assert "--run-shell" in run(run_entry, "--run-help").stdout
    version = run(run_entry, "--run-version", env=clean_env(QUIET_MODE="1"))
    assert version.stdout.splitlines()[0] == "RunImage version: 0.1.0"
    assert "RootFS version: 0.1.0.debian." in version.stdout


def test_closed_stdout_is_not_an_error(run_entry: Path) -> None:
    for mode in ("--run-help", "--run-version", "--run-binlist"):
        result = subprocess.run(
            ["sh", "-c", f'"$0" {mode} >&-', str(run_entry)],
            capture_output=True, text=True, env=clean_env(), check=False,
        )  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, (mode, result.stderr)


@pytest.mark.parametrize("closed", [">&-", "2>&-", "<&-"])
def test_closed_standard_streams_keep_the_exit_status(run_entry: Path, closed: str) -> None:
    for program, status in (("sh -c 'exit 5'", 5), ("true", 0), ("no-such-program", 127)):
        result = subprocess.run(
            ["sh", "-c", f'"$0" {program} {closed}; echo "status=$?"', str(run_entry)],
            capture_output=True, text=True, env=clean_env(), check=False,
        )  # fmt: skip
        assert result.stdout.splitlines()[-1] == f"status={status}", (program, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr


def test_signals_ignored_by_python_are_default_inside(run_entry: Path) -> None:
    """SIGPIPE and SIGXFSZ: `yes | head -1` ends quietly, as on the host."""
    ignored = run(run_entry, "grep", "^SigIgn:", "/proc/self/status").stdout.split()[1]
    assert int(ignored, 16) & ((1 << (13 - 1)) | (1 << (25 - 1))) == 0
    result = run(run_entry, "sh", "-c", "yes | head -1")
    assert result.stdout == "y\n" and result.stderr == "", result.stderr


@pytest.mark.parametrize("variable", ["RUN_SHELL", "AUTORUN"])
def test_unbalanced_quotes_in_a_command_variable(run_entry: Path, variable: str) -> None:
    result = run(run_entry, "--run-shell", "-c", "true", env=clean_env(**{variable: '"ls'}))
    assert result.returncode == 127
    assert f"{variable} is not a valid command line" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_runs_from_a_deleted_working_directory(run_entry: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    script = 'mkdir "$1" && cd "$1" && rmdir "$1" && "$0" sh -c "exit 3"; echo "status=$?"'
    result = subprocess.run(
        ["sh", "-c", script, str(run_entry), str(gone)],
        capture_output=True, text=True, env=clean_env(), check=False,
    )  # fmt: skip
    assert result.stdout.strip() == "status=3", result.stderr


def test_program_starts_in_the_directory_it_was_started_from(
    run_entry: Path, tmp_path: Path
) -> None:
    result = run(run_entry, "pwd", cwd=tmp_path)
    assert result.stdout.strip() == str(tmp_path.resolve()), result.stderr


def test_directory_the_container_does_not_show_is_never_home(run_entry: Path) -> None:
    """/var/tmp is the container's own: a program started there used to run in $HOME (bwrap's
    fallback), where `rm file` removed the home's file. It starts in / with a warning."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as outside:
        result = run(run_entry, "sh", "-c", "pwd; ls", cwd=Path(outside))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "/"
    assert "bin" in result.stdout.split() and "usr" in result.stdout.split()
    assert f"does not show {outside}" in result.stderr


def test_home_unset_comes_from_passwd(run_entry: Path) -> None:
    env = clean_env()
    env.pop("HOME", None)
    result = run(run_entry, "sh", "-c", "echo $HOME", env=env)
    assert result.stdout.strip() == str(Path.home())


def test_user_unset_comes_from_passwd(run_entry: Path) -> None:
    env = clean_env()
    for name in ("USER", "LOGNAME"):
        env.pop(name, None)
    result = run(run_entry, "sh", "-c", 'echo "$USER $LOGNAME"', env=env)
    name = pwd.getpwuid(os.getuid()).pw_name
    assert result.stdout.split() == [name, name], result.stderr


def test_environment_names_of_another_user_are_not_taken(run_entry: Path) -> None:
    """sudo -u bob keeps alice's USER and LOGNAME: the account of the uid names the user."""
    name = pwd.getpwuid(os.getuid()).pw_name
    result = run(run_entry, "sh", "-c", 'echo "$RUNUSER"', env=clean_env(USER="root", LOGNAME="x"))
    assert result.stdout.strip() == name, result.stderr


def test_everything_after_double_dash_is_the_program(run_entry: Path) -> None:
    result = run(run_entry, "--", "--run-shell", "-c", "true")
    assert result.returncode == 127
    assert "No such program in the container: '--run-shell'" in result.stderr
    assert run(run_entry, "--", "sh", "-c", "echo $0", "--help").stdout.strip() == "--help"


def test_missing_home_is_warned_about(run_entry: Path) -> None:
    result = run(run_entry, "true", env=clean_env(HOME="/nonexistent/home"))
    assert result.returncode == 0
    assert "'/nonexistent/home' does not exist" in result.stderr


def test_portable_home_and_config(rundir: Path, tmp_path: Path) -> None:
    copy = rundir_copy(rundir, tmp_path / "RunDir")
    env = clean_env(PORTABLE_HOME="1", PORTABLE_CONFIG="1")
    result = run(copy / "Run", "sh", "-c", 'touch "$HOME/made"; echo "$XDG_CONFIG_HOME"', env=env)
    assert result.returncode == 0, result.stderr
    home = tmp_path / "portable-home" / "sh"
    assert (home / "made").exists()
    assert result.stdout.strip() == str(tmp_path / "sh.config")
    later = run(copy / "Run", "sh", "-c", "echo $HOME")
    assert later.stdout.strip() == str(home), "an existing portable home is used again"


def test_nested_container_starts_without_nocap(run_entry: Path) -> None:
    result = run(run_entry, "/var/RunDir/Run", "sh", "-c", "echo nested")
    assert result.stdout.strip() == "nested", result.stderr


def test_home_that_is_a_file_is_refused(run_entry: Path) -> None:
    result = run(run_entry, "true", env=clean_env(HOME="/etc/passwd"))
    assert result.returncode == 127
    assert "is not a directory" in result.stderr


def test_full_output_device_is_one_error_line(run_entry: Path) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(run_entry), "--run-help"], stdout=full, stderr=subprocess.PIPE, text=True,
            env=clean_env(), check=False,
        )  # fmt: skip
    assert result.returncode == 127
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
