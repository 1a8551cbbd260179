"""The helper programs the launcher runs: the portable ones in RunDir/static, or the host's.

SYS_TOOLS=1 prefers every host tool, SYS_<TOOL>=1 one of them; where the host has none, the
portable one is used after all. Where RunDir/static lacks a tool (a RunDir assembled without the
portable tools), the host's is used.
"""

from __future__ import annotations

import os

from runimage import log
from runimage.settings import Paths, flag, which

# Variable exported with the chosen path, the switch that prefers the host's, the program name.
TOOLS = (
    ("BWRAP", "SYS_BWRAP", "bwrap"),
    ("SQFUSE", "SYS_SQFUSE", "squashfuse"),
    ("UNSQFS", "SYS_UNSQFS", "unsquashfs"),
    ("MKSQFS", "SYS_MKSQFS", "mksquashfs"),
    ("UNIONFS", "SYS_UNIONFS", "unionfs"),
    ("SLIRP", "SYS_SLIRP", "slirp4netns"),
)


def locate(paths: Paths, switch: str, name: str) -> str:
    """The path of one tool, or "" when neither RunDir/static nor the host has it."""
    portable = os.path.join(paths.static, name)
    has_portable = os.access(portable, os.X_OK)
    if flag("SYS_TOOLS") or flag(switch) or not has_portable:
        host = which(name, paths.sys_path, skip=paths.static)
        if host:
            if has_portable:
                log.info(f"The system {name} is used!")
            return host
    return portable if has_portable else ""


def export_all(paths: Paths) -> None:
    """Exports BWRAP, SQFUSE, ... as the usage text lists them: the tool each will run."""
    for variable, switch, name in TOOLS:
        os.environ[variable] = locate(paths, switch, name) or os.path.join(paths.static, name)


def is_setuid(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & 0o4000)
    except OSError:
        return False
