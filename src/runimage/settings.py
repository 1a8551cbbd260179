"""Where the container lives and who runs it: paths, names and versions derived from the
environment the runtime (packed) or RunDir/Run (unpacked) started the launcher with.

Start-up time matters here (the launcher runs on every start), so this module imports nothing
beyond os and sys, and reads each file once.
"""

from __future__ import annotations

import os
import sys

RUNIMAGE_VERSION = "0.1.0"

# Names under which the container itself is started; any other name means autorun of that name.
OWN_NAMES = ("Run", "runimage")


def flag(name: str) -> bool:
    """True when an on/off switch of the usage text is on (set to 1)."""
    return os.environ.get(name) == "1"


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read().strip()
    except OSError:
        return ""


def absolute(path: str) -> str:
    """path made absolute; relative as it is where the working directory no longer exists
    (the kernel still resolves paths from it, os.getcwd() cannot)."""
    try:
        return os.path.abspath(path)
    except FileNotFoundError:
        return os.path.normpath(path)


def which(name: str, path: str, skip: str = "") -> str:
    """The first executable called name on path, leaving out the directory skip."""
    for directory in path.split(":"):
        if not directory or directory == skip:
            continue
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return ""


def _real_user() -> str:
    """The user's name: as root (ALLOW_ROOT=1 under sudo), the one sudo was called by; else the
    account of the effective uid, whatever USER or LOGNAME say (sudo -u bob keeps alice's)."""
    import pwd

    uid = os.geteuid()
    if uid == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        # An account the host does not list (a container's uid): the environment's word.
        return os.environ.get("USER") or os.environ.get("LOGNAME") or str(uid)


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (KeyError, ImportError):
        return str(gid)


class Paths:
    """The directories of one container: RunDir, its rootfs and tools, and the places beside
    the image (or beside the RunDir) where configs, caches, overlays and homes are kept."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.packed = bool(environ.get("RUNOFFSET") and environ.get("ARGV0"))
        self.sys_path = environ.get("SYS_PATH") or environ.get("PATH", "/usr/bin:/bin")
        if self.packed:
            self._locate_packed(environ)
        else:
            self._locate_unpacked(environ)
        self.rootfs = os.path.join(self.rundir, "rootfs")
        self.static = os.path.join(self.rundir, "static")
        self.cachedir = environ.get("RUNCACHEDIR") or os.path.join(self.imagedir, "cache")
        self.configdir = os.path.join(self.imagedir, "config")
        self.overfsdir = os.path.join(self.imagedir, "overlayfs")
        self.sandboxhomedir = os.path.join(self.imagedir, "sandbox-home")
        self.portablehomedir = os.path.join(self.imagedir, "portable-home")
        self.runtime = os.path.join(self.static, "runtime")
        self.srcname = os.path.basename(self.src)

    def _locate_packed(self, environ: dict[str, str]) -> None:
        argv0 = environ["ARGV0"]
        self.rundir = environ.get("RUNDIR") or os.path.dirname(absolute(sys.argv[0]))
        self.image = environ.get("RUNIMAGE") or os.path.realpath(argv0)
        typed = argv0 if "/" in argv0 else which(argv0, self.sys_path) or argv0
        self.src = absolute(typed)
        self.imagedir = os.path.dirname(self.image)
        self.imagename = os.path.basename(self.image)

    def _locate_unpacked(self, environ: dict[str, str]) -> None:
        entry = environ.get("RUNSRC") or os.path.join(environ.get("RUNDIR", ""), "Run")
        typed = entry if "/" in entry else which(entry, self.sys_path) or entry
        self.src = absolute(typed)
        rundir = environ.get("RUNDIR", "")
        self.rundir = rundir if os.path.isdir(rundir) else os.path.dirname(os.path.realpath(typed))
        self.image = ""
        self.imagedir = os.path.realpath(os.path.join(self.rundir, ".."))
        self.imagename = ""


class Identity:
    """The user the container runs as."""

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.gid = os.getegid()
        self.user = _real_user()
        self.group = _group_name(self.gid)


def rootfs_version(rootfs: str) -> str:
    parts = [read_text(os.path.join(rootfs, name)) for name in (".version", ".type", ".build")]
    return ".".join(part for part in parts if part)


def own_name(name: str, rootfs_type: str) -> bool:
    """True when the container was started under its own name rather than an autorun name."""
    return name.startswith(OWN_NAMES) or (bool(rootfs_type) and name == rootfs_type)
