"""Where the program starts inside the container, worked out from the bwrap options."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runimage import workdir

HOME_SHARED = ["--bind-try", "/rootfs", "/", "--bind-try", "/home", "/home", "--tmpfs", "/root"]


def test_a_shared_directory_keeps_its_path() -> None:
    found, _, _ = workdir.mounts(HOME_SHARED)
    assert workdir.inside_path("/home/ann/project", found) == "/home/ann/project"


def test_a_directory_under_the_rootfs_mount_is_not_the_hosts() -> None:
    found, _, _ = workdir.mounts(HOME_SHARED)
    assert workdir.inside_path("/opt/project", found) is None
    assert workdir.inside_path("/rootfs/etc", found) == "/etc"


def test_a_tmpfs_over_a_shared_directory_hides_it() -> None:
    options = [*HOME_SHARED, "--tmpfs", "/home", "--bind-try", "/data/ann", "/home/ann"]
    found, _, _ = workdir.mounts(options)
    assert workdir.inside_path("/home/bob", found) is None
    assert workdir.inside_path("/data/ann/src", found) == "/home/ann/src"


def test_the_rundir_is_found_at_var_rundir() -> None:
    found, _, _ = workdir.mounts([*HOME_SHARED, "--bind-try", "/tmp/.mount_x", "/var/RunDir"])
    assert workdir.inside_path("/tmp/.mount_x/static", found) == "/var/RunDir/static"


def test_users_chdir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert workdir.chdir_options([*HOME_SHARED, "--chdir", "/srv", "ls"]) == ([], "")


def test_unseen_directory_starts_in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/usr/share")
    assert workdir.chdir_options([*HOME_SHARED, "ls"]) == (["--chdir", "/"], "/usr/share")
    monkeypatch.chdir("/")
    assert workdir.chdir_options([*HOME_SHARED, "ls"]) == (["--chdir", "/"], "")


def test_users_binds_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    here = os.getcwd()
    options = ["--bind-try", "/rootfs", "/", "--ro-bind", here, "/work", "ls"]
    assert workdir.chdir_options(options) == (["--chdir", "/work"], "")


def test_destinations_with_doubled_slashes_count() -> None:
    found, _, _ = workdir.mounts([*HOME_SHARED, "--bind", "/opt/x", "//tmp//work/"])
    assert workdir.shown_at("/tmp/work/a", found) == "/opt/x/a"


def test_a_directory_the_user_cannot_enter_starts_in_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    options = ["--bind-try", "/rootfs", "/", "--bind-try", "/tmp", "/tmp", "ls"]
    assert workdir.chdir_options(options) == (["--chdir", "/"], os.getcwd())
