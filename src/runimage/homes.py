"""The container's $HOME.

TMP_HOME=1 gives a tmpfs home, gone on exit; SANDBOX_HOME=1 (or SANDBOX_HOME_DIR) a home of its
own beside the image, kept, with the host's homes hidden; their _DL forms bind the host's
~/Downloads into it. PORTABLE_HOME=1 (or PORTABLE_HOME_DIR) uses a home beside the image as the
host home.

By default the home is seamless: the host's /home is visible as it is. A HOME outside /home (for
example /var/lib/user or /opt/me) is bound to /home/$USER inside, since the rootfs has its own
/var and /opt. HOMEs under /tmp, /mnt, /media, /run, /dev, /proc and /sys are visible inside
already and keep their path. A symlinked HOME is replaced by the directory it points to, since a
bind cannot land on a symlink that leads outside the container.
"""

from __future__ import annotations

import os

from runimage import log
from runimage.settings import Paths

# First path components under which a HOME is already visible inside the container.
SHARED_TOPS = ("tmp", "mnt", "media", "run", "dev", "proc", "sys")


class Home:
    """The home as the container will see it: its path inside, and the bwrap options that
    make it so."""

    def __init__(
        self, path: str, source: str, options: list[str], xauthority: str, shares_home: bool
    ) -> None:
        self.path = path
        self.source = source
        self.options = options
        self.xauthority = xauthority
        # Whether the host's /home is visible inside as it is.
        self.shares_home = shares_home


def _resolve_symlink(home: str) -> str:
    """home through its own symlink (also written with a trailing slash): inside, the link may
    lead where the container shows nothing."""
    home = home.rstrip("/") or home
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

    shares_home = options[:3] == ["--bind-try", "/home", "/home"]
    return Home(inside, home, options, _xauthority(home, inside), shares_home)


def _make_home(path: str) -> None:
    try:
        for directory in (path, os.path.join(path, ".cache"), os.path.join(path, ".config")):
            os.makedirs(directory, exist_ok=True)
    except OSError as failure:
        from runimage.log import Die

        raise Die(f"Cannot create '{path}': {failure.strerror}", hint="check the path") from None


def _first_dir(setting: str, candidates: list[str]) -> str:
    """The first candidate that exists, or with the switch on, the first one."""
    for candidate in candidates:
        if setting == "1" or os.path.isdir(candidate):
            return candidate
    return ""


def portable_home(paths: Paths, name: str) -> str:
    """PORTABLE_HOME_DIR, or with PORTABLE_HOME=1 (or where one exists already) a home beside
    the image: portable-home/<name>, portable-home/<image name>, portable-home/Run."""
    setting = os.environ.get("PORTABLE_HOME", "")
    if setting == "0":
        return ""
    chosen = os.environ.get("PORTABLE_HOME_DIR", "")
    if not chosen:
        names = [name, *([paths.imagename] if paths.image else []), "Run"]
        chosen = _first_dir(setting, [os.path.join(paths.portablehomedir, n) for n in names])
    if chosen:
        _make_home(chosen)
        os.environ["PORTABLE_HOME"] = "1"
        log.info(f"Setting $HOME to: '{chosen}'")
    return chosen


def portable_config(paths: Paths, name: str) -> str:
    """With PORTABLE_CONFIG=1 (or where one exists already) the XDG_CONFIG_HOME beside the
    image: <name>.config, <image>.config, Run.config."""
    setting = os.environ.get("PORTABLE_CONFIG", "")
    if setting == "0":
        return ""
    candidates = [os.path.join(paths.imagedir, f"{name}.config")]
    if paths.image:
        candidates.append(f"{paths.image}.config")
    candidates.append(os.path.join(paths.imagedir, "Run.config"))
    chosen = _first_dir(setting, candidates)
    if chosen:
        _make_home(chosen)
        log.info(f"Setting $XDG_CONFIG_HOME to: '{chosen}'")
    return chosen


def host_home() -> str:
    """$HOME, or where it is unset, the user's home from the password database."""
    home = os.environ.get("HOME", "")
    if home:
        return home
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_dir
    except (KeyError, ImportError):
        return ""


def _private_home(user: str, uid: int) -> str:
    return "/root" if uid == 0 else f"/home/{user}"


def tmp_home(sys_home: str, user: str, uid: int, downloads: bool) -> Home:
    """A home in a tmpfs: nothing written to it outlives the run."""
    inside = _private_home(user, uid)
    options = ["--tmpfs", "/home", "--tmpfs", "/root", "--dir", inside]
    options += ["--dir", f"{inside}/.cache", "--dir", f"{inside}/.config"]
    if downloads:
        options += ["--dir", f"{inside}/Downloads"]
        options += ["--bind-try", f"{sys_home}/Downloads", f"{inside}/Downloads"]
    log.info(f"Setting temporary $HOME to: '{inside}'")
    return Home(inside, "", options, _xauthority(sys_home, inside), False)


def sandbox_dir(paths: Paths, name: str) -> str:
    """SANDBOX_HOME_DIR (created when missing), or an existing sandbox-home/<name>,
    sandbox-home/<image name> or sandbox-home/Run beside the image; with SANDBOX_HOME=1 or
    SANDBOX_HOME_DL=1, sandbox-home/<name>, created."""
    if "0" in (os.environ.get("SANDBOX_HOME"), os.environ.get("SANDBOX_HOME_DL")):
        return ""
    chosen = (
        os.path.abspath(os.environ["SANDBOX_HOME_DIR"])
        if os.environ.get("SANDBOX_HOME_DIR")
        else ""
    )
    if not chosen:
        names = [name, *([paths.imagename] if paths.image else []), "Run"]
        existing = [os.path.join(paths.sandboxhomedir, n) for n in names]
        chosen = next((path for path in existing if os.path.isdir(path)), "")
    asked = "1" in (os.environ.get("SANDBOX_HOME"), os.environ.get("SANDBOX_HOME_DL"))
    if not chosen and asked:
        chosen = os.path.join(paths.sandboxhomedir, name)
    if chosen:
        _make_home(chosen)
    return chosen


def sandbox_home(directory: str, sys_home: str, user: str, uid: int, downloads: bool) -> Home:
    """A home of its own, kept in directory; the host's homes are hidden."""
    inside = _private_home(user, uid)
    options = [] if uid == 0 else ["--tmpfs", "/home", "--dir", inside]
    options += ["--bind-try", directory, inside]
    if downloads:
        options += ["--dir", f"{inside}/Downloads"]
        options += ["--bind-try", f"{sys_home}/Downloads", f"{inside}/Downloads"]
    log.info(f"Setting sandbox $HOME to: '{directory}'")
    return Home(inside, directory, options, _xauthority(sys_home, inside), False)


def choose(paths: Paths, name: str, user: str, uid: int) -> Home:
    """The home of a run: temporary, sandbox or portable where asked for, else the host's,
    seamless."""
    sys_home = host_home()
    config = portable_config(paths, name)
    if config:
        os.environ["XDG_CONFIG_HOME"] = config
    if "1" in (os.environ.get("TMP_HOME"), os.environ.get("TMP_HOME_DL")):
        return tmp_home(sys_home, user, uid, os.environ.get("TMP_HOME_DL") == "1")
    sandbox = sandbox_dir(paths, name)
    if sandbox:
        downloads = os.environ.get("SANDBOX_HOME_DL") == "1"
        return sandbox_home(sandbox, sys_home, user, uid, downloads)
    home = seamless(portable_home(paths, name) or sys_home, user, uid)
    if home.source and os.path.exists(home.source) and not os.path.isdir(home.source):
        from runimage.log import Die

        raise Die(f"$HOME '{home.source}' is not a directory", hint="set HOME to a directory")
    if home.source and not os.path.isdir(home.source):
        log.warning(f"$HOME '{home.source}' does not exist: what is written to it is not kept")
    return home


def _xauthority(sys_home: str, inside: str) -> str:
    """XAUTHORITY as seen inside: a cookie file under the host's home moves with the home."""
    current = os.environ.get("XAUTHORITY", "")
    if not current:
        cookie = os.path.join(sys_home, ".Xauthority")
        return os.path.join(inside, ".Xauthority") if os.path.exists(cookie) else ""
    if sys_home and inside != sys_home and current.startswith(sys_home.rstrip("/") + "/"):
        return inside + current[len(sys_home.rstrip("/")) :]
    return current
