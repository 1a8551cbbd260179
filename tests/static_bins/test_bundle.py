"""static-bins/bundle.py: library resolution inside a chroot, and the built bundle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "static-bins"))

import bundle  # noqa: E402

HOST_TRUE = Path("/bin/true")
HOST_LIBDIR = Path("/lib/x86_64-linux-gnu")
BUILT = Path(os.environ.get("RUNIMAGE_STATIC", REPO / "build" / "RunDir" / "static"))

needs_host_glibc = pytest.mark.skipif(
    bundle.read_elf(HOST_TRUE) is None or not (HOST_LIBDIR / "libc.so.6").exists(),
    reason="needs an x86_64 glibc host for ELF fixtures",
)
needs_bundle = pytest.mark.skipif(
    not (BUILT / "python3").exists(),
    reason=f"bundle not built ({BUILT}); run static-bins/build.sh",
)


def make_chroot(root: Path) -> Path:
    """A Debian-like usr-merged tree holding /usr/bin/true and its libraries."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    for name in ("bin", "lib", "lib64"):
        (root / name).symlink_to(f"usr/{name}")
    shutil.copy(HOST_TRUE, root / "usr/bin/true")
    libdir = root / "usr/lib/x86_64-linux-gnu"
    for lib in ("libc.so.6", "ld-linux-x86-64.so.2"):
        shutil.copy(HOST_LIBDIR / lib, libdir / lib)
    # Debian's loader link is absolute: it must resolve inside the chroot.
    (root / "usr/lib64/ld-linux-x86-64.so.2").symlink_to(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    )
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc/ld.so.conf.d/x86_64-linux-gnu.conf").write_text(
        "# multiarch\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n"
    )
    return root


def test_resolve_reroots_absolute_symlinks(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr/lib/real").write_text("x")
    (tmp_path / "usr/lib/abs").symlink_to("/lib/real")
    chroot = bundle.Chroot(tmp_path)
    assert chroot.resolve("/lib/abs") == "/usr/lib/real"
    assert chroot.is_file("/lib/abs")


def test_resolve_clamps_dotdot_at_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/escape").symlink_to("../../../../etc/passwd")
    assert bundle.Chroot(tmp_path).resolve("/etc/escape") == "/etc/passwd"
    assert not bundle.Chroot(tmp_path).is_file("/etc/escape")


def test_resolve_refuses_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(bundle.BundleError, match="symbolic links"):
        bundle.Chroot(tmp_path).resolve("/a")


def test_library_dirs_follow_includes(tmp_path: Path) -> None:
    (tmp_path / "etc/ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("/opt/lib # local\ninclude ld.so.conf.d/*.conf\n")
    (tmp_path / "etc/ld.so.conf.d/a.conf").write_text("/srv/lib/\n")
    dirs = bundle.Chroot(tmp_path).library_dirs()
    assert dirs[:2] == ["/opt/lib", "/srv/lib"]
    assert "/usr/lib/x86_64-linux-gnu" in dirs


def test_read_elf_rejects_non_elf(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert bundle.read_elf(script) is None
    assert bundle.read_elf(tmp_path / "missing") is None


@needs_host_glibc
def test_read_elf_of_host_true() -> None:
    info = bundle.read_elf(HOST_TRUE)
    assert info is not None
    assert "libc.so.6" in info.needed
    assert info.interp == "/lib64/ld-linux-x86-64.so.2"


@needs_host_glibc
def test_closure_resolves_inside_chroot(tmp_path: Path) -> None:
    chroot = bundle.Chroot(make_chroot(tmp_path / "root"))
    closure = bundle.Resolver(chroot).closure(["/bin/true"])
    assert closure.libraries["libc.so.6"] == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert closure.loader == "/lib64/ld-linux-x86-64.so.2"
    assert chroot.resolve(closure.loader) == "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


@needs_host_glibc
def test_closure_never_uses_host_libraries(tmp_path: Path) -> None:
    root = make_chroot(tmp_path / "root")
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").unlink()
    with pytest.raises(bundle.BundleError, match=r"libc\.so\.6 \(needed by /bin/true\)"):
        bundle.Resolver(bundle.Chroot(root)).closure(["/bin/true"])


@needs_host_glibc
def test_closure_skips_libraries_of_another_architecture(tmp_path: Path) -> None:
    root = make_chroot(tmp_path / "root")
    (root / "usr/local/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/local/lib/x86_64-linux-gnu/libc.so.6").write_bytes(b"\x7fELF\x01junk")
    closure = bundle.Resolver(bundle.Chroot(root)).closure(["/usr/bin/true"])
    assert closure.libraries["libc.so.6"] == "/usr/lib/x86_64-linux-gnu/libc.so.6"


def test_runpath_origin_is_expanded(tmp_path: Path) -> None:
    resolver = bundle.Resolver(bundle.Chroot(tmp_path))
    info = bundle.ElfInfo(needed=(), rpath=(), runpath=("$ORIGIN/../lib/app",), interp=None)
    dirs = resolver.search_dirs("/opt/app/bin/tool", info, inherited_rpath=())
    assert dirs[0] == "/opt/app/bin/../lib/app"


def test_rpath_ignored_when_runpath_present(tmp_path: Path) -> None:
    resolver = bundle.Resolver(bundle.Chroot(tmp_path))
    info = bundle.ElfInfo(needed=(), rpath=("/old",), runpath=("/new",), interp=None)
    assert "/old" not in resolver.search_dirs("/x", info, inherited_rpath=("/inherited",))


def test_package_owner_across_usrmerge(tmp_path: Path) -> None:
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info / "libc6:amd64.list").write_text("/lib/x86_64-linux-gnu/libc.so.6\n")
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n"
    )
    packages = bundle.Packages(bundle.Chroot(tmp_path))
    assert packages.find_owner("/usr/lib/x86_64-linux-gnu/libc.so.6") == "libc6"
    assert packages.versions == {"libc6": "2.36-9"}


def test_stdlib_pruning_keeps_real_modules() -> None:
    stdlib_skip = bundle.STDLIB_PRUNED_FILES
    assert bundle._skipped("_testcapi.cpython-311-x86_64-linux-gnu.so", stdlib_skip)
    assert not bundle._skipped("_ssl.cpython-311-x86_64-linux-gnu.so", stdlib_skip)
    assert not bundle._skipped("_testcapi.cpython-311-x86_64-linux-gnu.so", frozenset())


# The built bundle (static-bins/build.sh build/RunDir/static).

TOOL_VERSIONS = {
    "bwrap": ["--version"],
    "squashfuse": ["--help"],
    "squashfuse_ll": ["--help"],
    "fuse-overlayfs": ["--version"],
    "unionfs": ["--version"],
    "mksquashfs": ["-version"],
    "unsquashfs": ["-version"],
    "slirp4netns": ["--version"],
    "bash": ["--version"],
    "socat": ["-V"],
    "fusermount3": ["--version"],
    "python3": ["--version"],
}
LAUNCHER_IMPORTS = "click, psutil, pyroute2, Xlib, elftools, json, ssl, ctypes, sqlite3"


def run_tool(argv: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    output = result.stdout + result.stderr
    assert "error while loading shared libraries" not in output
    assert "runimage-static:" not in output
    return output


@needs_bundle
@pytest.mark.parametrize("tool", sorted(TOOL_VERSIONS))
def test_bundled_tool_runs(tool: str) -> None:
    output = run_tool([str(BUILT / tool), *TOOL_VERSIONS[tool]])
    assert output.strip()


@needs_bundle
def test_bundle_layout() -> None:
    stub = BUILT / ".bundle/bin/.exec-stub"
    info = bundle.read_elf(stub)
    assert info is not None and info.interp is None and not info.needed
    for tool in TOOL_VERSIONS:
        assert os.readlink(BUILT / tool) == ".bundle/bin/.exec-stub"
    versions = (BUILT / ".version").read_text().splitlines()
    assert any(line.startswith("libc6 ") for line in versions)
    assert not (BUILT / ".bundle/lib/python3.11/test").exists()
    assert list((BUILT / ".bundle/lib/python3.11/__pycache__").glob("os.*.pyc"))


@needs_bundle
def test_unknown_tool_name_fails_with_127(tmp_path: Path) -> None:
    link = tmp_path / "nosuchtool"
    link.symlink_to(BUILT / "bash")
    result = subprocess.run([str(link)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 127
    assert result.stderr == f"runimage-static: nosuchtool: no such bundled tool in {BUILT}\n"


@needs_bundle
def test_entry_point_ignores_host_python_environment(tmp_path: Path) -> None:
    static = tmp_path / "static"
    shutil.copytree(BUILT, static, symlinks=True)
    (static / "launcher/run.py").write_text(
        "import sys\n"
        f"import {LAUNCHER_IMPORTS}\n"
        "print(sys.path[0]); print(sys.prefix); print(sys.executable)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/nonexistent", "PYTHONPATH": "/nonexistent"}
    output = run_tool([str(static / "python3"), "-E", "-S", str(static / "launcher/run.py")], env)
    assert output.splitlines() == [
        str(static / "launcher"),
        str(static / ".bundle"),
        str(static / "python3"),
    ]


@needs_bundle
def test_python_child_uses_bundled_interpreter() -> None:
    code = (
        "import subprocess, sys; "
        "print(subprocess.run([sys.executable, '-E', '-S', '-c', 'import ssl; print(7)'], "
        "capture_output=True, text=True).stdout, end='')"
    )
    assert run_tool([str(BUILT / "python3"), "-E", "-S", "-c", code]) == "7\n"


BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def busybox_root(tmp_path: Path) -> Path:
    """A root with nothing but a static busybox: no glibc, no Python, no bash."""
    info = bundle.read_elf(BUSYBOX)
    if info is None or info.interp is not None or info.needed:
        pytest.skip("needs a static /bin/busybox (busybox-static)")
    if shutil.which("bwrap") is None:
        pytest.skip("needs bwrap")
    root = tmp_path / "root"
    for d in ("bin", "dev", "proc", "tmp", "static"):
        (root / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    return root


@needs_bundle
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/static/python3", "-E", "-S", "-c", "import ssl, json, ctypes; print(1)"], "1"),
        (["/static/bwrap", "--version"], "bubblewrap"),
        (["/static/mksquashfs", "-version"], "mksquashfs version"),
        (["/static/bash", "-c", "echo ok"], "ok"),
        (["/static/squashfuse", "--help"], "squashfuse"),
    ],
)
def test_runs_on_host_without_glibc(busybox_root: Path, argv: list[str], expected: str) -> None:
    bwrap = [
        "bwrap", "--unshare-user",
        "--bind", str(busybox_root), "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--ro-bind", str(BUILT), "/static",
        "--clearenv", "--setenv", "PATH", "/bin",
    ]  # fmt: skip
    result = subprocess.run([*bwrap, *argv], capture_output=True, text=True, timeout=60)
    if "No permissions to create new namespace" in result.stderr:
        pytest.skip("user namespaces are not available")
    assert expected in result.stdout + result.stderr
