"""TMP_HOME, SANDBOX_HOME and their _DL forms, end to end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import clean_env, run, rundir_copy


@pytest.fixture
def copy(rundir: Path, tmp_path: Path) -> Path:
    """A RunDir whose image directory (where sandbox homes are kept) is tmp_path."""
    return rundir_copy(rundir, tmp_path / "RunDir")


@pytest.fixture
def downloads() -> Iterator[Path]:
    """A file in the host's ~/Downloads for the _DL forms to show."""
    directory = Path.home() / "Downloads"
    directory.mkdir(exist_ok=True)
    marker = directory / f"runimage-dl-{os.getpid()}"
    marker.write_text("dl\n")
    yield marker
    marker.unlink()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def test_tmp_home_is_private_and_gone(copy: Path) -> None:
    host_file = Path.home() / f".runimage-tmp-home-{os.getpid()}"
    script = (
        'echo "$HOME"; touch "$HOME/made"; ls -A /home; ls "$HOME/.config" >/dev/null && echo ok'
    )
    result = run(copy / "Run", "sh", "-c", script, env=clean_env(TMP_HOME="1"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == f"/home/{_user()}"
    assert lines[1:] == [_user(), "ok"], "only the temporary home is in /home"
    assert not host_file.exists()
    assert run(copy / "Run", "sh", "-c", 'test -e "$HOME/made" || echo gone',
               env=clean_env(TMP_HOME="1")).stdout.strip() == "gone"  # fmt: skip


def test_tmp_home_dl_shows_downloads(copy: Path, downloads: Path) -> None:
    result = run(copy / "Run", "sh", "-c", f'cat "$HOME/Downloads/{downloads.name}"',
                 env=clean_env(TMP_HOME_DL="1"))  # fmt: skip
    assert result.stdout == "dl\n", result.stderr


def test_sandbox_home_is_kept_beside_the_image(copy: Path, tmp_path: Path) -> None:
    result = run(copy / "Run", "sh", "-c", 'touch "$HOME/kept"; echo "$HOME"; ls -A /home',
                 env=clean_env(SANDBOX_HOME="1"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"/home/{_user()}", _user()]
    assert (tmp_path / "sandbox-home" / "sh" / "kept").exists()
    again = run(copy / "Run", "sh", "-c", 'ls "$HOME"')
    assert "kept" in again.stdout.split(), "an existing sandbox home is used again"


def test_sandbox_home_dir_and_dl(copy: Path, tmp_path: Path, downloads: Path) -> None:
    chosen = tmp_path / "my sandbox"
    env = clean_env(SANDBOX_HOME_DIR=str(chosen), SANDBOX_HOME_DL="1")
    script = f'touch "$HOME/x"; cat "$HOME/Downloads/{downloads.name}"'
    result = run(copy / "Run", "sh", "-c", script, env=env)
    assert result.stdout == "dl\n", result.stderr
    assert (chosen / "x").exists() and (chosen / ".config").is_dir()


def test_sandbox_home_zero_disables_an_existing_one(copy: Path, tmp_path: Path) -> None:
    (tmp_path / "sandbox-home" / "sh").mkdir(parents=True)
    result = run(copy / "Run", "sh", "-c", 'echo "$HOME"', env=clean_env(SANDBOX_HOME="0"))
    assert result.stdout.strip() == str(Path.home())
