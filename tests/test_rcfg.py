"""Configuration files (.rcfg) beside the RunDir and inside it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import clean_env, run, rundir_copy


@pytest.fixture
def configured(rundir: Path, tmp_path: Path) -> Path:
    """A RunDir whose image directory (its parent) is tmp_path."""
    target = rundir_copy(rundir, tmp_path / "RunDir")
    (target / "config").mkdir()
    return target


def test_run_rcfg_sets_variables_and_bwrap_args(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text(
        'FROM_CONFIG="a b"\nBWRAP_ARGS+=(--setenv FROM_ARRAY "x y")\nNO_CAP=1\n'
    )
    result = run(
        configured / "Run",
        "sh",
        "-c",
        'echo "$FROM_CONFIG|$FROM_ARRAY"; grep CapEff /proc/self/status',
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "a b|x y"
    assert lines[1].split()[1] == "0000000000000000"
    assert "Found RunImage config" in result.stderr


def test_program_rcfg_wins_over_run_rcfg(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text("WHICH=run\n")
    (configured.parent / "printenv.rcfg").write_text("WHICH=printenv\n")
    assert run(configured / "Run", "printenv", "WHICH").stdout.strip() == "printenv"
    assert run(configured / "Run", "sh", "-c", "echo $WHICH").stdout.strip() == "run"


def test_internal_config_then_external(configured: Path) -> None:
    (configured / "config" / "Run.rcfg").write_text("A=internal\nB=internal\n")
    (configured.parent / "Run.rcfg").write_text("B=external\n")
    result = run(configured / "Run", "sh", "-c", "echo $A $B")
    assert result.stdout.split() == ["internal", "external"]


def test_autorun_array_from_config(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text("AUTORUN=(printf '%s|' 'one two')\n")
    assert run(configured / "Run", "three").stdout == "one two|three|"


def test_runimage_config_zero_disables(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text("WHICH=run\n")
    env = clean_env(RUNIMAGE_CONFIG="0")
    result = run(configured / "Run", "sh", "-c", "echo x${WHICH}x", env=env)
    assert result.stdout.strip() == "xx"


def test_runimage_config_names_a_file(configured: Path, tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere.rcfg"
    chosen.write_text("WHICH=chosen\n")
    env = clean_env(RUNIMAGE_CONFIG=str(chosen))
    assert run(configured / "Run", "printenv", "WHICH", env=env).stdout.strip() == "chosen"


def test_broken_config_is_one_clear_error(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text("if then fi (\n")
    result = run(configured / "Run", "true")
    assert result.returncode == 127
    assert "Cannot read the configuration file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_last_command_failing_is_not_an_error(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text('FOO=bar\n[ -n "$NOPE" ] && FOO=baz\necho noise\n')
    result = run(
        configured / "Run", "sh", "-c", 'echo "$FOO"; env | grep -c noise; echo "x${rcfg}x"'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["bar", "0", "xx"]
    assert "noise" in result.stderr


def test_syntax_error_names_the_line(configured: Path) -> None:
    (configured.parent / "Run.rcfg").write_text("FOO=(\nif then\n")
    result = run(configured / "Run", "true")
    assert result.returncode == 127
    assert "Run.rcfg: line" in result.stderr


@pytest.mark.parametrize("chosen", ["missing.rcfg", "/etc/passwd", "/tmp"])
def test_runimage_config_that_is_no_config_file_is_refused(configured: Path, chosen: str) -> None:
    """Settings asked for in a file that cannot be read must not go quietly unapplied."""
    (configured.parent / "Run.rcfg").write_text("WHICH=run\n")
    result = run(configured / "Run", "true", env=clean_env(RUNIMAGE_CONFIG=chosen))
    assert result.returncode == 127
    assert f"RUNIMAGE_CONFIG '{chosen}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
