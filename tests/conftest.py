"""Shared fixtures: the built RunDir (Debian), a busybox RunDir for fast runs, and helpers that
run the launcher as the current (unprivileged) user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "src"))

RUNDIR = Path(os.environ.get("RUNIMAGE_TEST_RUNDIR", TOP / "build" / "RunDir"))
IMAGE = Path(os.environ.get("RUNIMAGE_TEST_IMAGE", TOP / "runimage"))
BUSYBOX_ROOTFS = Path(os.environ.get("RUNIMAGE_TEST_BUSYBOX", TOP / "build" / "busybox-rootfs"))

# Variables of the host that would change how the launcher behaves under test.
LAUNCHER_VARIABLES = (
    "RUNDIR", "RUNSRC", "RUNOFFSET", "RUNIMAGE", "ARGV0", "AUTORUN", "RUN_SHELL", "ALLOW_ROOT",
    "SYS_TOOLS", "QUIET_MODE", "NO_WARN", "OVERFS_ID", "OVERFS_MODE", "KEEP_OVERFS",
    "RUNIMAGE_CONFIG", "TMPDIR", "SANDBOX_NET", "NO_NET", "INSIDE_RUNIMAGE",
)  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(extra)
    return env


def run(
    entry: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(entry), *args],
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        input=stdin,
    )


def wait_until_gone(pattern: str, seconds: float) -> str:
    """pgrep -f pattern until it finds nothing or time is up; what it found last."""
    deadline = time.monotonic() + seconds
    while True:
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def require_unprivileged() -> None:
    if os.geteuid() == 0:
        pytest.skip("the launcher is tested as an ordinary user (tests/run.sh sets that up)")


def rundir_copy(
    rundir: Path, target: Path, rootfs: Path | None = None, *, bare: bool = False
) -> Path:
    """A RunDir at target with rundir's entry point and tools, and rundir's rootfs or another
    (none at all when bare)."""
    target.mkdir()
    shutil.copy2(rundir / "Run", target / "Run")
    (target / "static").symlink_to(rundir / "static")
    if not bare:
        (target / "rootfs").symlink_to(rootfs or rundir / "rootfs")
    return target


@pytest.fixture(scope="session")
def rundir() -> Path:
    require_unprivileged()
    if not (RUNDIR / "Run").exists() or not (RUNDIR / "rootfs" / "etc").is_dir():
        pytest.skip(f"no built RunDir at {RUNDIR} (run make)")
    return RUNDIR


@pytest.fixture(scope="session")
def run_entry(rundir: Path) -> Path:
    return rundir / "Run"


@pytest.fixture(scope="session")
def busybox_rundir(rundir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RunDir with the busybox rootfs and the same launcher and tools."""
    if not (BUSYBOX_ROOTFS / "bin" / "busybox").exists():
        pytest.skip(f"no busybox rootfs at {BUSYBOX_ROOTFS} (run make)")
    return rundir_copy(rundir, tmp_path_factory.mktemp("busybox") / "RunDir", BUSYBOX_ROOTFS)
