"""The single file: the runtime, its options, building and robustness, as an ordinary user."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BUSYBOX_ROOTFS, IMAGE, clean_env, require_unprivileged, run, wait_until_gone

from runimage.build import elf_end

pytestmark = pytest.mark.packed


@pytest.fixture(scope="session")
def image() -> Path:
    require_unprivileged()
    if not IMAGE.is_file():
        pytest.skip(f"no packed image at {IMAGE} (run make)")
    return IMAGE


def our_mounts(before: set[str] | None = None) -> set[str]:
    """Mount points of runtime mounts, less those in before (made by others: other users and
    other runs go on beside the tests)."""
    with open("/proc/self/mounts") as file:
        points = {unescape(line.split()[1]) for line in file if ".mount_" in line}
    return points - (before or set())


def unescape(field: str) -> str:
    """A field of /proc/self/mounts, which writes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal.group(1), 8)), field)


def mount_dirs() -> list[str]:
    return [name for name in os.listdir("/tmp") if name.startswith((".mount_", ".runimage"))]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_runs_a_command(image: Path) -> None:
    result = run(image, "sh", "-c", "grep ^ID= /etc/os-release; echo $RUNOFFSET; exit 5")
    assert result.returncode == 5, result.stderr
    release, offset = result.stdout.split()
    assert release == "ID=debian"
    assert int(offset) > 0


def test_run_shell_cat_os_release(image: Path) -> None:
    result = run(image, "--run-shell", "-c", "cat /etc/os-release")
    assert 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"' in result.stdout, result.stderr


def test_link_named_htop_runs_htop(image: Path, tmp_path: Path) -> None:
    """The README's example: ln -s runimage htop && ./htop."""
    link = tmp_path / "htop"
    link.symlink_to(image)
    result = run(link, "--version")
    assert result.returncode == 0 and result.stdout.startswith("htop "), result.stderr


def test_runtime_offset_agrees_with_unsquashfs(image: Path) -> None:
    offset = run(image, "--runtime-offset").stdout.strip()
    with open(image, "rb") as file:
        assert int(offset) == elf_end(file.read(4 * 1024 * 1024))
    listing = subprocess.run(
        ["unsquashfs", "-o", offset, "-l", "-d", "", str(image), "Run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert listing.returncode == 0, listing.stderr
    assert "/Run" in listing.stdout


def test_runtime_version_and_help(image: Path) -> None:
    assert run(image, "--runtime-version").stdout.startswith("runimage-runtime ")
    assert (
        "--runtime-extract"
        in run(image, "--runtime-help").stdout + run(image, "--runtime-help").stderr
    )


def test_extract_then_run(image: Path, tmp_path: Path) -> None:
    result = run(image, "--runtime-extract", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entry = tmp_path / "RunDir" / "Run"
    assert entry.is_file()
    assert run(entry, "cat", "/etc/debian_version").stdout.startswith("12.")


def test_extract_and_run(image: Path, tmp_path: Path) -> None:
    env = clean_env(TMPDIR=str(tmp_path))
    result = run(image, "--runtime-extract-and-run", "sh", "-c", "echo ok", env=env)
    assert result.stdout.strip() == "ok", result.stderr
    assert os.listdir(tmp_path) == []


def test_extract_and_run_variable(image: Path, tmp_path: Path) -> None:
    env = clean_env(TMPDIR=str(tmp_path), RUNTIME_EXTRACT_AND_RUN="1")
    assert run(image, "echo", "ok", env=env).stdout.strip() == "ok"
    assert os.listdir(tmp_path) == []


def test_path_with_spaces_and_non_ascii(image: Path, tmp_path: Path) -> None:
    directory = tmp_path / "dir with spaces ünïcödé"
    directory.mkdir()
    copy = directory / "runimage copy é"
    shutil.copy2(image, copy)
    result = run(copy, "sh", "-c", 'printf "%s\\n" "$RUNIMAGE"')
    assert result.stdout.strip() == str(copy), result.stderr


def test_two_instances_at_once(image: Path) -> None:
    first = subprocess.Popen([str(image), "sleep", "3"], env=clean_env())
    second = run(image, "echo", "second")
    assert second.stdout.strip() == "second"
    assert first.wait(timeout=60) == 0


def test_kill_9_leaves_no_mount(image: Path, tmp_path: Path) -> None:
    """The runtime mounts under TMPDIR: a private one shows what this run left."""
    env = clean_env(TMPDIR=str(tmp_path))
    launcher = subprocess.Popen([str(image), "sleep", "300"], env=env)
    time.sleep(2)
    assert any(p.startswith(str(tmp_path)) for p in our_mounts()), "the image should be mounted"
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while (our_mounts() & {str(p) for p in tmp_path.iterdir()}) or list(tmp_path.iterdir()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not any(p.startswith(str(tmp_path)) for p in our_mounts())
    assert list(tmp_path.iterdir()) == []


def test_kill_9_ends_a_program_that_ignores_sigterm(image: Path) -> None:
    """Nothing waits for the container once the runtime is gone: a program that ignores the
    SIGTERM its death sends gets SIGKILL after a grace period."""
    tag = f"runimage-trap-{os.getpid()}"
    script = f"trap '' TERM; exec -a {tag} sleep 300"
    runtime = subprocess.Popen([str(image), "bash", "-c", script], env=clean_env())
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-f", f"^{tag}"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.2)
    runtime.kill()
    runtime.wait()
    assert wait_until_gone(f"^{tag}", 15) == ""


def start_mounted(image: Path, tmpdir: Path) -> tuple[subprocess.Popen[str], int]:
    """Starts `image sleep 300` with TMPDIR tmpdir; returns it once mounted, and its keeper (the
    FUSE server: the runtime's child in a session of its own)."""
    env = clean_env(TMPDIR=str(tmpdir))
    runtime = subprocess.Popen(
        [str(image), "sleep", "300"], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not any(p.startswith(str(tmpdir)) for p in our_mounts()):
        assert time.monotonic() < deadline, "the image was never mounted"
        time.sleep(0.2)
    with open(f"/proc/{runtime.pid}/task/{runtime.pid}/children") as file:
        keeper = next(pid for pid in map(int, file.read().split()) if os.getsid(pid) == pid)
    return runtime, keeper


def test_dead_fuse_server_stops_the_container(image: Path, tmp_path: Path) -> None:
    """The FUSE server killed: the container is stopped at once with one line that says why,
    and no mount is left."""
    runtime, keeper = start_mounted(image, tmp_path)
    os.kill(keeper, signal.SIGKILL)
    _, errors = runtime.communicate(timeout=30)
    assert runtime.returncode == 127, errors
    assert errors.strip().splitlines() == [
        f"runimage-runtime: the FUSE server of {image} ended unexpectedly: stopping the container"
    ]
    assert not any(p.startswith(str(tmp_path)) for p in our_mounts())
    assert list(tmp_path.iterdir()) == []


def test_next_run_removes_mounts_of_killed_servers(image: Path, tmp_path: Path) -> None:
    """Runtime and FUSE server both killed with SIGKILL (killall -9): nothing is left to
    unmount, and the kernel keeps a dead mount; the next run in that TMPDIR removes it."""
    tmpdir = tmp_path / "tmp dir"
    tmpdir.mkdir()
    runtime, keeper = start_mounted(image, tmpdir)
    os.kill(runtime.pid, signal.SIGKILL)
    os.kill(keeper, signal.SIGKILL)
    runtime.communicate(timeout=30)
    time.sleep(0.5)
    try:
        assert any(p.startswith(str(tmpdir)) for p in our_mounts()), "the dead mount stays"
        assert run(image, "true", env=clean_env(TMPDIR=str(tmpdir))).returncode == 0
        assert not any(p.startswith(str(tmpdir)) for p in our_mounts())
        assert list(tmpdir.iterdir()) == []
    finally:
        for point in our_mounts():
            if point.startswith(str(tmpdir)):
                subprocess.run(["fusermount3", "-u", "-z", point], check=False)


def test_hangup_of_its_terminal_ends_the_program(image: Path) -> None:
    """Closing the terminal of which runimage is the session leader (a new terminal window,
    ssh -t) sends SIGHUP to it alone: it passes it on, and the program ends with 129."""
    tag = f"runimage-hup-{os.getpid()}"
    pid, terminal = pty.fork()
    if pid == 0:
        argv = [str(image), "bash", "-c", f"exec -a {tag} sleep 300"]
        os.execve(argv[0], argv, clean_env())
    deadline = time.monotonic() + 60
    while subprocess.run(["pgrep", "-f", f"^{tag}"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.2)
    os.close(terminal)
    deadline = time.monotonic() + 15
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    if ended[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert ended[0] == pid, "runimage went on after the hangup"
    assert os.waitstatus_to_exitcode(ended[1]) == 129
    assert wait_until_gone(f"^{tag}", 5) == ""


def test_truncated_file_fails_cleanly(image: Path, tmp_path: Path) -> None:
    before = our_mounts()
    size = image.stat().st_size
    offset = int(run(image, "--runtime-offset").stdout)
    for length in (size // 2, offset, offset + 100):
        broken = tmp_path / f"runimage-cut-{length}"
        with open(image, "rb") as source, open(broken, "wb") as target:
            target.write(source.read(length))
        broken.chmod(0o755)
        result = run(broken, "true", timeout=60)
        assert result.returncode == 127, (length, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert our_mounts(before) == set()


def test_build_from_unpacked_rundir(rundir: Path, tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = run(rundir / "Run", "--run-build", str(target), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Final size" in result.stderr
    assert run(target, "cat", "/etc/debian_version").stdout.startswith("12.")
    assert [p.name for p in tmp_path.iterdir()] == ["new"]


def test_build_on_a_terminal_shows_a_progress_bar(rundir: Path, tmp_path: Path) -> None:
    """On a terminal the build draws mksquashfs's bar, not its summary of the filesystem."""
    pid, terminal = pty.fork()
    if pid == 0:
        argv = [str(rundir / "Run"), "--run-build", str(tmp_path / "new")]
        os.execve(argv[0], argv, clean_env())
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    text = shown.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    bars = re.findall(r"\] +(\d+)/(\d+) +(\d+)%", text)
    assert bars and bars[-1][0] == bars[-1][1] and bars[-1][2] == "100", text
    assert "Filesystem size" not in text and "Number of files" not in text, text


# The rootfs's python3.11 and libc, and the launcher's copies of them: the same Debian files.
TWINS = (
    "/usr/bin/python3.11",
    "/var/RunDir/static/.bundle/bin/python3",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/var/RunDir/static/.bundle/lib/libc.so.6",
)


def inodes_and_links(image: Path, env: dict[str, str] | None = None) -> list[str]:
    result = run(image, "stat", "-c", "%i %h", *TWINS, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_launcher_and_rootfs_copies_of_a_file_share_one_inode(image: Path) -> None:
    """The runtime gives identical files one inode number, so a program of the rootfs finds in
    the page cache what the launcher read; each still counts one link."""
    python, python_copy, libc, libc_copy = inodes_and_links(image)
    assert python == python_copy and libc == libc_copy and python != libc
    assert python.endswith(" 1") and libc.endswith(" 1")
    own = inodes_and_links(image, clean_env(RUNTIME_NO_TWINS="1"))
    assert own[0] != own[1] and own[2] != own[3]


def test_identical_files_of_the_rootfs_are_not_one_inode(image: Path, rundir: Path) -> None:
    """Only the launcher's bundle and its copies are twins: tar over the rootfs, which takes
    one inode for one file, sees no hard links where the unpacked RunDir has none (the util-linux
    licences are identical files)."""
    script = "tar cf - /usr/share/doc 2>/dev/null | tar tvf - | grep -c ' link to '"
    packed = run(image, "sh", "-c", script)
    unpacked = run(rundir / "Run", "sh", "-c", script)
    assert packed.stdout.strip() == unpacked.stdout.strip() == "0", packed.stderr


def test_build_from_packed_with_zstd(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "rebuilt"
    result = run(image, "--rB", str(target), "-zstd", "3", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "zstd" in result.stderr
    assert run(target, "echo", "rebuilt").stdout.strip() == "rebuilt"
    # Files that were one inode to the build stay files of their own, not hard links.
    python, python_copy, _, _ = inodes_and_links(target, clean_env(RUNTIME_NO_TWINS="1"))
    assert python != python_copy and python.endswith(" 1") and python_copy.endswith(" 1")


def test_build_keep_old_and_extension(rundir: Path, tmp_path: Path) -> None:
    env = clean_env(KEEP_OLD_BUILD="1", BUILD_WITH_EXTENSION="1")
    target = tmp_path / "img"
    for _ in range(2):
        assert run(rundir / "Run", "--run-build", str(target), env=env, timeout=600).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.lz4.debian", "img.lz4.debian.old"]


def test_build_through_a_link_replaces_what_it_points_to(rundir: Path, tmp_path: Path) -> None:
    (tmp_path / "versions").mkdir()
    link = tmp_path / "current"
    link.symlink_to("versions/runimage-2")
    assert run(rundir / "Run", "--run-build", str(link), timeout=600).returncode == 0
    assert link.is_symlink() and os.readlink(link) == "versions/runimage-2"
    assert run(link, "echo", "built").stdout.strip() == "built"


def test_bad_build_arguments_are_refused(rundir: Path, tmp_path: Path) -> None:
    result = run(rundir / "Run", "--run-build", str(tmp_path / "no" / "dir" / "x"))
    assert result.returncode == 127
    assert "build directory does not exist" in result.stderr
    result = run(rundir / "Run", "--run-build", f"{tmp_path / 'newdir'}/")
    assert result.returncode == 127
    assert f"build directory does not exist: '{tmp_path / 'newdir'}'" in result.stderr
    assert list(tmp_path.iterdir()) == []
    result = run(rundir / "Run", "--run-build", str(tmp_path / "x"), "-zstd", "42")
    assert result.returncode == 127
    assert "Unknown build argument" in result.stderr or "level" in result.stderr


def start_build(rundir: Path, target: Path, own_group: bool = False) -> subprocess.Popen[bytes]:
    """Starts a slow (xz) build of target and returns once its new file is being written; with
    own_group, in a process group of its own."""
    build = subprocess.Popen(
        [str(rundir / "Run"), "--run-build", str(target), "-xz"],
        env=clean_env(),
        stderr=subprocess.PIPE,
        start_new_session=own_group,
    )
    deadline = time.monotonic() + 60
    while not list(target.parent.glob(f"{target.name}.new*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    return build


def test_interrupted_build_keeps_old_image(rundir: Path, tmp_path: Path) -> None:
    target = tmp_path / "runimage-old"
    assert run(rundir / "Run", "--run-build", str(target), timeout=600).returncode == 0
    before = digest(target)
    build = start_build(rundir, target)
    build.send_signal(signal.SIGINT)
    assert build.wait(timeout=60) == 130
    assert build.stderr is not None
    assert "interrupted" in build.stderr.read().decode()
    assert digest(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["runimage-old"]


def test_build_ended_by_its_process_group_is_one_line(rundir: Path, tmp_path: Path) -> None:
    """SIGTERM to the group (mksquashfs, the launcher, and Run, which passes it on to the
    launcher) ends the build with one message and 128+15, leaving no partial file."""
    target = tmp_path / "runimage-group"
    build = start_build(rundir, target, own_group=True)
    os.killpg(build.pid, signal.SIGTERM)
    assert build.wait(timeout=60) == 143
    assert build.stderr is not None
    text = build.stderr.read().decode()
    assert "Traceback" not in text and "interrupted" in text, text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGKILL])
def test_killed_build_leaves_no_partial_file(rundir: Path, tmp_path: Path, number: int) -> None:
    build = start_build(rundir, tmp_path / "runimage-x")
    build.send_signal(number)
    build.wait(timeout=60)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"mksquashfs .* {tmp_path}"], capture_output=True)
    assert left.stdout == b""
    if number == signal.SIGTERM:
        assert list(tmp_path.iterdir()) == []


def test_build_on_a_full_disk_keeps_the_old_image(rundir: Path, tmp_path: Path) -> None:
    """The disk fills up as the runtime is written into the new file (mksquashfs left a hole
    for it): one error line, a non-zero status, the old image byte-identical, no partial file.
    The small disk is a tmpfs in a user and mount namespace, where the build runs as root."""
    reference = tmp_path / "reference"
    assert run(rundir / "Run", "--run-build", str(reference), timeout=600).returncode == 0
    size = reference.stat().st_size
    runtime_size = elf_end(reference.read_bytes()[: 4 * 1024 * 1024])
    disk = tmp_path / "disk"
    disk.mkdir()
    # Room for the old image and the new squashfs, and for half the runtime.
    room = size + (size - runtime_size) + runtime_size // 2
    script = (
        'mount -t tmpfs -o size="$1" tmpfs "$2" && cp "$3" "$2/img" && sha256sum "$2/img" &&'
        ' ALLOW_ROOT=1 "$4" --run-build "$2/img"; echo "status=$?"; sha256sum "$2/img"; ls -A "$2"'
    )
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(room), str(disk), str(reference),
         str(rundir / "Run")],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    lines = result.stdout.split("\n")
    assert lines[0] == lines[2] and lines[0].split()[0] == digest(reference), result.stdout
    assert lines[1] == "status=127", result.stdout + result.stderr
    assert lines[3:] == ["img", ""], result.stdout
    errors = [line for line in result.stderr.splitlines() if "[ ERROR ]" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr


def test_build_removes_partial_files_of_killed_builds(rundir: Path, tmp_path: Path) -> None:
    """A launcher killed with SIGKILL mid-build leaves '<target>.new<PID>'; the next build of that
    target removes it. It leaves alone the file of a build still running (locked, maybe from
    another PID namespace) and a file of that name that no build wrote."""
    stale = tmp_path / "img.new4242"
    running = tmp_path / "img.new4343"
    users = tmp_path / "img.new20241203"
    stale.write_bytes(bytes(4096) + b"hsqs")
    running.write_bytes(bytes(4096))
    users.write_bytes(b"my precious data")
    with open(running, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run(rundir / "Run", "--run-build", str(tmp_path / "img"), timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["img", running.name, users.name])
    assert "Removing the partial file of an interrupted build: 'img.new4242'" in result.stderr


def test_build_into_read_only_directory(rundir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    result = run(rundir / "Run", "--run-build", str(locked / "x"))
    assert result.returncode == 127
    assert f"Cannot write to '{locked}'" in result.stderr


def test_runs_on_host_without_glibc_python_or_bash(image: Path, tmp_path: Path) -> None:
    """A stand-in host: a busybox-only root, with /dev/fuse and no fusermount."""
    if not (BUSYBOX_ROOTFS / "bin" / "busybox").exists():
        pytest.skip("no busybox rootfs")
    host = [
        "bwrap", "--bind", str(BUSYBOX_ROOTFS), "/",
        "--dev", "/dev", "--dev-bind", "/dev/fuse", "/dev/fuse",
        "--proc", "/proc", "--tmpfs", "/tmp",
        "--ro-bind", str(image), "/tmp/img/runimage",
        "--setenv", "PATH", "/bin:/usr/bin", "--setenv", "HOME", "/tmp",
    ]  # fmt: skip
    probe = subprocess.run(
        [*host, "sh", "-c", "ls /lib*/libc.so* /usr/lib*/libc.so* python3 bash 2>&1; true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "No such file" in probe.stdout and "libc.so.6" not in probe.stdout.replace(
        "No such file", ""
    )
    result = subprocess.run(
        [*host, "/tmp/img/runimage", "--run-shell", "-c", "cat /etc/os-release"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_env(),
    )
    assert "ID=debian" in result.stdout.splitlines(), result.stderr


def test_runs_without_fusermount(image: Path, tmp_path: Path) -> None:
    hide = []
    for directory in ("/usr/bin", "/bin", "/usr/local/bin", "/sbin", "/usr/sbin"):
        for name in ("fusermount", "fusermount3"):
            if os.path.exists(f"{directory}/{name}") and not os.path.islink(directory):
                hide += ["--ro-bind", "/dev/null", f"{directory}/{name}"]
    result = subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--tmpfs", "/tmp", *hide,
         str(image), "sh", "-c", "grep ^ID= /etc/os-release"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_env(),
    )  # fmt: skip
    assert result.stdout.strip() == "ID=debian", result.stderr


def lookups(stderr: str) -> int:
    """The number of lookups the runtime served, from its RUNTIME_FUSE_STATS report."""
    found = re.search(r"fuse lookup\s+(\d+) requests", stderr)
    assert found, stderr
    return int(found.group(1))


def test_missing_names_are_looked_up_once(image: Path) -> None:
    """The kernel keeps the answer that a name does not exist (the image never changes): ten
    probes of one missing name cost one lookup, ten missing names ten."""
    script = 'for name in "$@"; do test -e "/usr/lib/$name" && exit 9; done; exit 0'
    env = clean_env(RUNTIME_FUSE_STATS="1")
    same = run(image, "sh", "-c", script, "sh", *["missing"] * 10, env=env)
    distinct = run(image, "sh", "-c", script, "sh", *[f"missing{i}" for i in range(10)], env=env)
    assert same.returncode == 0 and distinct.returncode == 0, same.stderr + distinct.stderr
    assert lookups(distinct.stderr) - lookups(same.stderr) >= 9


def test_one_server_thread_never_waits_on_itself(image: Path) -> None:
    """With one FUSE thread, a file stored into the page cache after its lookup used to wait
    for a page under a read (Run's prefetch) that only that thread could answer: the run hung
    at its end, unkillable, in most starts."""
    env = clean_env(RUNTIME_FUSE_THREADS="1")
    for _ in range(5):
        result = run(image, "python3", "-c", "import json, email", env=env, timeout=60)
        assert result.returncode == 0, result.stderr


def test_unusable_tmpdir_is_one_clear_line(image: Path) -> None:
    result = run(image, "true", env=clean_env(TMPDIR="/nonexistent/tmp"))
    assert result.returncode == 127
    assert "set TMPDIR to a directory you can write to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_parallel_reads_match_the_unpacked_tree(image: Path, rundir: Path) -> None:
    """Every file of /usr/lib read through the runtime's threads, four readers at once, has the
    content it has in the RunDir."""
    script = (
        "cd /usr/lib && find . -type f | wc -l && find . -type f -print0 | sort -z"
        " | xargs -0 -P4 -n50 sha256sum | sort | sha256sum"
    )
    packed = run(image, "sh", "-c", script, timeout=300)
    unpacked = run(rundir / "Run", "sh", "-c", script, timeout=300)
    assert packed.returncode == 0 and unpacked.returncode == 0, packed.stderr + unpacked.stderr
    assert packed.stdout == unpacked.stdout
    files, digest_line = packed.stdout.splitlines()
    assert int(files) > 1000 and len(digest_line.split()[0]) == 64


def pushed_files(stderr: str) -> int:
    """The number of files the runtime stored in the page cache ahead of their reads, from its
    RUNTIME_FUSE_STATS report."""
    found = re.search(r"pushed\s+(\d+) files", stderr)
    assert found, stderr
    return int(found.group(1))


def test_small_files_pushed_after_a_listing_match_the_unpacked_tree(
    image: Path, rundir: Path
) -> None:
    """Files read one after another after their directory was listed (as tar does) come from
    the page cache where the runtime pushed them, with the content they have in the RunDir."""
    script = "cd /usr/lib/python3.11 && find . -type f | sort | xargs sha256sum | sha256sum"
    packed = run(image, "sh", "-c", script, env=clean_env(RUNTIME_FUSE_STATS="1"), timeout=300)
    unpacked = run(rundir / "Run", "sh", "-c", script, timeout=300)
    assert packed.returncode == 0 and unpacked.returncode == 0, packed.stderr + unpacked.stderr
    assert packed.stdout == unpacked.stdout
    assert pushed_files(packed.stderr) > 100


def test_small_files_pushed_after_a_lookup_match_the_unpacked_tree(
    image: Path, rundir: Path
) -> None:
    """Files opened by path, without a listing (as Python opens its .pyc files), some of them
    pushed as they are looked up, read as they are in the RunDir; with pushes off, the same."""
    cache = rundir / "rootfs/usr/lib/python3.11/__pycache__"
    names = sorted(path.name for path in cache.iterdir() if path.stat().st_size < 65536)
    assert len(names) > 50
    script = 'cd /usr/lib/python3.11/__pycache__ && for f in "$@"; do sha256sum "$f"; done'
    args = ["sh", "-c", script, "sh", *names]
    packed = run(image, *args, env=clean_env(RUNTIME_FUSE_STATS="1"), timeout=300)
    unpushed = run(image, *args, env=clean_env(RUNTIME_NO_PUSH="1", RUNTIME_FUSE_STATS="1"))
    unpacked = run(rundir / "Run", *args, timeout=300)
    assert packed.returncode == 0 and unpacked.returncode == 0, packed.stderr + unpacked.stderr
    assert packed.stdout == unpacked.stdout == unpushed.stdout
    assert len(packed.stdout.splitlines()) == len(names)
    assert pushed_files(packed.stderr) > 10
    assert pushed_files(unpushed.stderr) == 0
