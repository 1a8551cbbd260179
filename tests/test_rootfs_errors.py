"""A missing or broken rootfs, and a missing bwrap, get one clear error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run, rundir_copy


@pytest.fixture
def bare_rundir(rundir: Path, tmp_path: Path) -> Path:
    """A RunDir with the launcher and tools but a rootfs the test fills in."""
    return rundir_copy(rundir, tmp_path / "RunDir", bare=True)


def test_missing_rootfs(bare_rundir: Path) -> None:
    result = run(bare_rundir / "Run", "true")
    assert result.returncode == 127
    assert f"The rootfs is missing: '{bare_rundir}/rootfs'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_broken_rootfs(bare_rundir: Path) -> None:
    (bare_rundir / "rootfs").mkdir()
    (bare_rundir / "rootfs" / "junk").write_text("x")
    result = run(bare_rundir / "Run", "true")
    assert result.returncode == 127
    assert "The rootfs is broken" in result.stderr


def test_missing_program(run_entry: Path) -> None:
    result = run(run_entry, "no-such-program-here")
    assert result.returncode != 0
    assert "no-such-program-here" in result.stderr
