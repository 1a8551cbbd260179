"""The container's $HOME.

By default the home is seamless: the host's /home is visible as it is. A HOME outside /home (for
example /var/lib/user or /opt/me) is bound to /home/$USER inside, since the rootfs has its own
/var and /opt. HOMEs under /tmp, /mnt, /media, /run, /dev, /proc and /sys are visible inside
already and keep their path. A symlinked HOME is replaced by the directory it points to, since a
bind cannot land on a symlink that leads outside the container.
"""

from __future__ import annotations

import os

from runimage import log

# First path components under which a HOME is already visible inside the container.
SHARED_TOPS = ("tmp", "mnt", "media", "run", "dev", "proc", "sys")


class Home:
    """The home as the container will see it: its path inside, and the bwrap options that
    make it so."""

    def __init__(self, path: str, options: list[str], xauthority: str) -> None:
        self.path = path
        self.options = options
        self.xauthority = xauthority


def _resolve_symlink(home: str) -> str:
    if home and home != "/root" and os.path.islink(home):
        real = os.path.realpath(home)
        log.warning(f"$HOME is a symlink: using '{real}' as $HOME")
        return real
    return home


def seamless(sys_home: str, user: str, uid: int) -> Home:
    """The default home: the host's own, at /home/$USER when it lives elsewhere."""
    home = _resolve_symlink(sys_home)
    top = home.split("/")[1] if home.startswith("/") and home.count("/") >= 1 else ""
    inside = home
    options: list[str] = []

    if home and home != "/root" and not home.startswith("/home/") and top not in SHARED_TOPS:
        inside = "/root" if uid == 0 else f"/home/{user}"
        if uid == 0:
            options += ["--bind-try", "/home", "/home"]
        else:
            options += ["--tmpfs", "/home", "--tmpfs", "/root", "--dir", inside]
        options += ["--bind-try", home, inside]
    else:
        options += ["--bind-try", "/home", "/home"]
        options += ["--bind-try", "/root", "/root"] if uid == 0 else ["--tmpfs", "/root"]

    return Home(inside, options, _xauthority(home, inside))


def _xauthority(sys_home: str, inside: str) -> str:
    """XAUTHORITY as seen inside: a cookie file under the host's home moves with the home."""
    current = os.environ.get("XAUTHORITY", "")
    if not current:
        cookie = os.path.join(sys_home, ".Xauthority")
        return os.path.join(inside, ".Xauthority") if os.path.exists(cookie) else ""
    if sys_home and inside != sys_home and current.startswith(sys_home.rstrip("/") + "/"):
        return inside + current[len(sys_home.rstrip("/")) :]
    return current
