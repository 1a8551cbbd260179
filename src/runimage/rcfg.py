"""Configuration files (.rcfg): bash files that set the launcher's variables, read before a run.

The RunDir's own config/ comes first ($RUNDIR/config/<name>.rcfg, else Run.rcfg), then the first
external one found: RUNIMAGE_CONFIG (a path ending in .rcfg), <image dir>/<name>.rcfg,
$RUNCONFIGDIR/<name>.rcfg, <image>.rcfg, <image dir>/Run.rcfg, $RUNCONFIGDIR/Run.rcfg. <name> is
the name the container runs under: its own, the autorun program's, or the program asked for.
RUNIMAGE_CONFIG=0 reads none.

The files are bash: bash sources them with every variable exported (as `set -a` does) and
reports the environment and the arrays BWRAP_ARGS, EXEC_ARGS and AUTORUN back, NUL-separated.
Only runs that have a config file pay for starting bash.
"""

from __future__ import annotations

import os
import sys

from runimage import log
from runimage.log import Die
from runimage.settings import Paths, which

ARRAYS = ("BWRAP_ARGS", "EXEC_ARGS", "AUTORUN")
SECTION = "\0--runimage-rcfg-section--\0"

# Checks the syntax of each file given as an argument, sources it with every variable it sets
# exported (and what it prints sent to stderr), then prints the environment and each array,
# separated by SECTION. The status of a file's last command is not a failure.
READER = r"""
for rcfg in "$@"; do
    bash -n "$rcfg" || exit 3
    set -a
    source "$rcfg" >&2
    set +a
done
env -0
for name in BWRAP_ARGS EXEC_ARGS AUTORUN; do
    printf '%b' '\0--runimage-rcfg-section--\0'
    [[ "$(declare -p "$name" 2>/dev/null)" == "declare -a"* ]] || continue
    declare -n array=$name
    for item in "${array[@]}"; do printf '%s\0' "$item"; done
done
"""


class Config:
    """What the configuration files set: variables, and the arrays of bwrap options."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.bwrap_args: list[str] = []
        self.exec_args: list[str] = []


def internal_file(paths: Paths, name: str) -> str:
    for candidate in (f"{name}.rcfg", "Run.rcfg"):
        path = os.path.join(paths.rundir, "config", candidate)
        if os.path.isfile(path):
            return path
    return ""


def external_file(paths: Paths, name: str) -> str:
    chosen = os.environ.get("RUNIMAGE_CONFIG", "")
    if chosen.endswith(".rcfg") and os.path.isfile(chosen):
        return chosen
    if chosen:
        # What was asked for (NO_NET=1, say) must not go quietly unapplied.
        what = "does not exist" if not os.path.exists(chosen) else "is not a .rcfg file"
        raise Die(
            f"RUNIMAGE_CONFIG '{chosen}' {what}",
            hint="name a .rcfg file, or set RUNIMAGE_CONFIG=0 to read none",
        )
    candidates = [
        os.path.join(paths.imagedir, f"{name}.rcfg"),
        os.path.join(paths.configdir, f"{name}.rcfg"),
        f"{paths.image}.rcfg" if paths.image else "",
        os.path.join(paths.imagedir, "Run.rcfg"),
        os.path.join(paths.configdir, "Run.rcfg"),
    ]
    return next((path for path in candidates if path and os.path.isfile(path)), "")


def find(paths: Paths, name: str) -> list[str]:
    """The configuration files of a run, in the order they are read."""
    if os.environ.get("RUNIMAGE_CONFIG") == "0":
        log.warning("RunImage config is disabled!")
        return []
    return [path for path in (internal_file(paths, name), external_file(paths, name)) if path]


def _bash(paths: Paths) -> str:
    portable = os.path.join(paths.static, "bash")
    if os.access(portable, os.X_OK):
        return portable
    host = which("bash", paths.sys_path)
    if not host:
        raise Die("bash is needed to read .rcfg files", hint="use a complete runimage")
    return host


def load(paths: Paths, name: str) -> Config:
    """Reads the configuration files of a run into os.environ; returns their arrays."""
    config = Config()
    config.files = find(paths, name)
    if not config.files:
        return config

    import subprocess

    result = subprocess.run(
        [_bash(paths), "-c", READER, "rcfg", *config.files],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise Die(
            f"Cannot read the configuration file {' '.join(config.files)}",
            hint=(detail[-1] if detail else f"it ended with status {result.returncode}")
            + "; fix it, or set RUNIMAGE_CONFIG=0 to read none",
        )
    if result.stderr:
        sys.stderr.write(result.stderr.decode(errors="replace"))

    sections = result.stdout.decode(errors="surrogateescape").split(SECTION)
    _apply_environment(sections[0])
    arrays = {name: part.split("\0")[:-1] for name, part in zip(ARRAYS, sections[1:], strict=False)}
    config.bwrap_args = arrays.get("BWRAP_ARGS", [])
    config.exec_args = arrays.get("EXEC_ARGS", [])
    if arrays.get("AUTORUN"):
        os.environ["AUTORUN"] = " ".join(_quoted(arrays["AUTORUN"]))
    for path in config.files:
        log.info(f"Found RunImage config: '{path}'")
    return config


def _quoted(words: list[str]) -> list[str]:
    import shlex

    return [shlex.quote(word) for word in words]


def _apply_environment(block: str) -> None:
    for entry in block.split("\0"):
        name, separator, value = entry.partition("=")
        if not separator or not name or name in ("_", "SHLVL", "PWD", "OLDPWD"):
            continue
        if os.environ.get(name) != value:
            os.environ[name] = value
