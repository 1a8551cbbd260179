"""The bwrap command line of a container run.

The sandbox is data: small functions each return the bwrap options for one concern, and
BwrapCommand collects them with the container's environment and renders argv. Tests check argv
without running bwrap. The order of the concerns matters to bwrap (a tmpfs hides what was bound
below it before), so build() lays them out in one place.
"""

from __future__ import annotations

import os

from runimage import homes, log, tools
from runimage.settings import Identity, Paths, flag

# Where the RunDir is visible inside the container (NO_RUNDIR_BIND=1 disables it).
RUNDIR_INSIDE = "/var/RunDir"
# Where a host TMPDIR the container does not share is bound.
TMPDIR_INSIDE = "/run/.TMPDIR"


class BwrapCommand:
    """Options and environment for one bwrap run."""

    def __init__(self, bwrap: str, options: list[str], env: dict[str, str]) -> None:
        self.bwrap = bwrap
        self.options = options
        self.env = env

    def argv(self, command: list[str]) -> list[str]:
        return [self.bwrap, *self.options, *command]


def kernel_filesystems() -> list[str]:
    return ["--proc", "/proc", "--bind-try", "/sys", "/sys", "--dev-bind-try", "/dev", "/dev"]


def host_files() -> list[str]:
    options = [
        "--ro-bind-try", "/etc/hostname", "/etc/hostname",
        "--ro-bind-try", "/etc/nsswitch.conf", "/etc/nsswitch.conf",
    ]  # fmt: skip
    if flag("UNSHARE_LOCALTIME"):
        log.warning("Host localtime is unshared!")
    else:
        options += ["--ro-bind-try", "/etc/localtime", "/etc/localtime"]
    return options


def kernel_modules() -> list[str]:
    if flag("UNSHARE_MODULES"):
        log.warning("Kernel modules are unshared!")
        return []
    source = "/lib/modules" if os.path.isdir("/lib/modules") else "/usr/lib/modules"
    return ["--ro-bind-try", source, "/usr/lib/modules"]


def default_mounts() -> list[str]:
    if flag("UNSHARE_DEF_MOUNTS"):
        log.warning("Default mount points are unshared!")
        return []
    return ["--bind-try", "/mnt", "/mnt", "--bind-try", "/media", "/media"]


def users(paths: Paths, who: Identity, scratch: list[str]) -> list[str]:
    """The host's passwd and group, or with UNSHARE_USERS=1 the rootfs's own plus this user."""
    if not flag("UNSHARE_USERS"):
        return [
            "--ro-bind-try", "/etc/group", "/etc/group",
            "--ro-bind-try", "/etc/passwd", "/etc/passwd",
        ]  # fmt: skip
    log.warning("Users are unshared!")
    passwd_line = f"{who.user}:x:{who.uid}:{who.gid}:{who.user}:/home/{who.user}:/bin/sh"
    group_line = f"{who.group}:x:{who.gid}:"
    options = ["--unshare-user-try"]
    for name, line, key in (("passwd", passwd_line, f":x:{who.uid}:"),
                            ("group", group_line, f":x:{who.gid}:")):  # fmt: skip
        copy = f"/tmp/.{name}.{os.getpid()}"
        _write_account_file(os.path.join(paths.rootfs, "etc", name), copy, line, key)
        scratch.append(copy)
        options += ["--ro-bind-try", copy, f"/etc/{name}"]
    return options


def _write_account_file(source: str, copy: str, line: str, key: str) -> None:
    """A copy of an account file where this user's entry replaces any with the same id."""
    try:
        with open(source, encoding="utf-8") as file:
            entries = [entry for entry in file.read().splitlines() if key not in entry]
    except OSError:
        entries = []
    with open(copy, "w", encoding="utf-8") as file:
        file.write("\n".join([*entries, line]) + "\n")


def rundir(paths: Paths) -> list[str]:
    if flag("NO_RUNDIR_BIND"):
        log.warning("Binding RunDir is disabled!")
        return []
    return ["--bind-try", paths.rundir, RUNDIR_INSIDE]


def var_dirs(paths: Paths) -> list[str]:
    options: list[str] = []
    if not os.access(paths.rootfs, os.W_OK):
        options += ["--tmpfs", "/var/log", "--tmpfs", "/var/tmp"]
    for path in ("/var/mnt", "/var/home", "/var/roothome", "/var/log/wtmp", "/var/log/lastlog"):
        options += ["--bind-try", path, path]
    return options


def machine_id() -> list[str]:
    """The host's machine id at both places programs look for it."""
    etc, dbus = "/etc/machine-id", "/var/lib/dbus/machine-id"
    source = etc if os.path.isfile(etc) else dbus if os.path.isfile(dbus) else ""
    if not source:
        return []
    dbus_source = dbus if os.path.isfile(dbus) else source
    return ["--ro-bind-try", source, etc, "--ro-bind-try", dbus_source, dbus]


def tmp_dirs() -> list[str]:
    """The host's /tmp, with X11 sockets bound one by one (some compositors keep a socket
    directory that is not shareable as a whole)."""
    x11 = "/tmp/.X11-unix"
    if not os.path.isdir(x11):
        return ["--bind-try", "/tmp", "/tmp"]
    if os.path.islink(x11):
        options = ["--tmpfs", "/tmp", "--dir", x11]
        for entry in sorted(os.listdir("/tmp")):
            if entry != ".X11-unix":
                options += ["--bind-try", f"/tmp/{entry}", f"/tmp/{entry}"]
    else:
        options = ["--bind-try", "/tmp", "/tmp", "--tmpfs", x11]
    for entry in sorted(os.listdir(x11)):
        if entry.startswith("X"):
            options += ["--bind-try", f"{x11}/{entry}", f"{x11}/{entry}"]
    return options


def tmpdir(env: dict[str, str], home_shared: bool) -> list[str]:
    """The host's TMPDIR keeps its path where the container shares it (/tmp, the host's /home,
    /mnt, /media, /run/user); elsewhere it is bound to /run/.TMPDIR, in the container's private
    /run, so nothing is created on the host for it."""
    host_tmpdir = env.get("TMPDIR", "")
    if not host_tmpdir or not os.path.isdir(host_tmpdir):
        env.pop("TMPDIR", None)
        return []
    # Through its symlinks: /tmp/link to /var/tmp/x would lead nowhere inside.
    host_tmpdir = os.path.realpath(host_tmpdir)
    env["TMPDIR"] = host_tmpdir
    shared = ("/tmp", "/mnt", "/media", "/run/media", "/run/user") + (
        ("/home",) if home_shared else ()
    )
    if any(host_tmpdir == top or host_tmpdir.startswith(top + "/") for top in shared):
        return []
    inside = TMPDIR_INSIDE
    log.info(f"Binding $TMPDIR to: '{inside}'")
    env["TMPDIR"] = inside
    return ["--dir", inside, "--bind-try", host_tmpdir, inside]


def network() -> list[str]:
    if flag("SANDBOX_NET") or flag("NO_NET"):
        if flag("SANDBOX_NET"):
            log.warning("The network sandbox is not available in this build: network disabled!")
        else:
            log.warning("Network is disabled!")
        return ["--unshare-net"]
    return [
        "--share-net",
        "--ro-bind-try", "/etc/hosts", "/etc/hosts",
        "--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf",
    ]  # fmt: skip


def runtime_dirs(who: Identity, env: dict[str, str]) -> list[str]:
    """A private /run with the user's runtime directory; the host's sockets the desktop needs
    (dbus, udev, pulse, pipewire) are bound into it, as the UNSHARE_* switches allow."""
    xdg = f"/run/user/{who.uid}"
    env["XDG_RUNTIME_DIR"] = xdg
    options = ["--tmpfs", "/run", "--chmod", "0775", "/run", "--dir", xdg, "--chmod", "0700", xdg]
    binds = [] if flag("UNSHARE_DEF_MOUNTS") else ["/run/media"]

    if flag("UNSHARE_UDEV"):
        log.warning("UDEV is unshared!")
    else:
        binds.append("/run/udev")
    if flag("SHARE_SYSTEMD") and os.path.isdir("/run/systemd"):
        log.warning("SystemD is shared!")
        binds.append("/run/systemd")
    binds += _runtime_sockets(xdg)

    for path in binds:
        options += ["--bind-try", path, path]
    if not env.get("DBUS_SESSION_BUS_ADDRESS") and os.path.exists(f"{xdg}/bus"):
        env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={xdg}/bus"
    return options


def _runtime_sockets(xdg: str) -> list[str]:
    dbus = [f"{xdg}/bus", f"{xdg}/dbus-1"]
    unshare_dbus = flag("UNSHARE_DBUS")
    if unshare_dbus:
        log.warning("DBUS is unshared!")
    if flag("UNSHARE_PIDS"):
        shared = [] if unshare_dbus else ["/run/dbus", *dbus]
        return [*shared, f"{xdg}/pulse", f"{xdg}/pipewire-0", f"{xdg}/pipewire-0.lock"]
    if not unshare_dbus:
        return ["/run/utmp", "/run/dbus", xdg]
    try:
        entries = sorted(os.listdir(xdg))
    except OSError:
        entries = []
    return ["/run/utmp", *(f"{xdg}/{entry}" for entry in entries if f"{xdg}/{entry}" not in dbus)]


def namespaces() -> list[str]:
    options: list[str] = []
    if flag("UNSHARE_PIDS"):
        log.warning("Host PIDs are unshared!")
        options.append("--unshare-pid")
    if flag("UNSHARE_DBUS"):
        options += ["--unsetenv", "DBUS_SESSION_BUS_ADDRESS"]
    if not flag("ALLOW_BG"):
        options.append("--die-with-parent")
    return options


def capabilities(suid_bwrap: bool) -> list[str]:
    """ALL but CAP_SYS_NICE (gamescope refuses to start with it); none with NO_CAP=1 or a setuid
    bwrap. Without capabilities a nested bwrap can start; nocap does the same per command."""
    if suid_bwrap or flag("NO_CAP"):
        log.warning("Bubblewrap capabilities are disabled!")
        return ["--cap-drop", "ALL"]
    return ["--cap-add", "ALL", "--cap-drop", "CAP_SYS_NICE"]


def search_path(home: str, sys_path: str) -> str:
    parts = [
        f"{home}/.local/bin", "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib/jvm/default/bin",
        "/usr/local/bin", "/usr/local/sbin", "/opt/cuda/bin", f"{home}/.cargo/bin",
        *sys_path.split(":"), "/usr/bin/vendor_perl", f"{RUNDIR_INSIDE}/static",
    ]  # fmt: skip
    unique: list[str] = []
    for part in parts:
        if part and part not in unique:
            unique.append(part)
    return ":".join(unique)


def _joined(*parts: str) -> str:
    return ":".join(part for part in parts if part)


def container_env(paths: Paths, home: homes.Home, shell: list[str]) -> dict[str, str]:
    """The environment the program starts with: the host's, plus the container's own."""
    env = dict(os.environ)
    for private in ("RUNSRC", "SYS_PATH"):
        env.pop(private, None)
    env.update(
        INSIDE_RUNIMAGE="1",
        RUNPID=str(os.getpid()),
        HOME=home.path,
        PATH=search_path(home.path, paths.sys_path),
        FAKEROOTDONTTRYCHOWN="true",
        XDG_CONFIG_DIRS=_joined("/etc/xdg", os.environ.get("XDG_CONFIG_DIRS", "")),
        XDG_DATA_DIRS=_joined("/usr/local/share:/usr/share", os.environ.get("XDG_DATA_DIRS", "")),
        SHELL=shell[0],
    )
    if home.xauthority:
        env["XAUTHORITY"] = home.xauthority
    if not flag("NO_RUNDIR_BIND"):
        env.update(
            RUNDIR=RUNDIR_INSIDE,
            RUNSTATIC=f"{RUNDIR_INSIDE}/static",
            RUNROOTFS=f"{RUNDIR_INSIDE}/rootfs",
            RUNRUNTIME=f"{RUNDIR_INSIDE}/static/runtime",
        )
        # The portable tools (BWRAP, MKSQFS, ...) as the container sees them: the RunDir's host
        # path (a mount point in TMPDIR, packed) may not be visible inside.
        prefix = paths.rundir.rstrip("/") + "/"
        for variable, _switch, _name in tools.TOOLS:
            if env.get(variable, "").startswith(prefix):
                env[variable] = RUNDIR_INSIDE + "/" + env[variable][len(prefix) :]
    return env


# Host directories the container shares (where they exist): a program there is found inside.
SHARED_HOST_DIRS = (
    "/home/",
    "/tmp/",
    "/mnt/",
    "/media/",
    "/run/",
    "/var/mnt/",
    "/var/home/",
    "/root/",
)


def program_exists(name: str, search_path: str, rootfs: str, rundir: str) -> bool:
    """Whether the container can start program name: in the rootfs, the RunDir or a shared
    host directory. Errs on the side of yes (bwrap then reports what it cannot run)."""
    if not name or name.endswith("/"):
        return False
    if "/" in name and not name.startswith("/"):
        return True
    directories = [""] if name.startswith("/") else search_path.split(":")
    for directory in directories:
        path = os.path.join(directory, name) if directory else name
        if path.startswith(("/proc/", "/sys/", "/dev/")):
            return True
        inside_rundir = path.startswith(RUNDIR_INSIDE + "/")
        candidates = [rundir + path[len(RUNDIR_INSIDE) :]] if inside_rundir else [rootfs + path]
        if path.startswith(SHARED_HOST_DIRS):
            candidates.append(path)
        if any(os.path.lexists(candidate) for candidate in candidates):
            return True
    return False


def build(
    bwrap: str,
    suid_bwrap: bool,
    paths: Paths,
    who: Identity,
    shell: list[str],
    scratch: list[str],
    home: homes.Home | None = None,
) -> BwrapCommand:
    """The whole bwrap command of a run, in the order bwrap needs."""
    if home is None:
        home = homes.seamless(homes.host_home(), who.user, who.uid)
    env = container_env(paths, home, shell)
    # A login sets these; a bare environment (env -i, cron) may not have them.
    env.setdefault("USER", who.user)
    env.setdefault("LOGNAME", who.user)
    options = [
        "--bind-try", paths.rootfs, "/",
        *kernel_filesystems(),
        *host_files(),
        *kernel_modules(),
        *default_mounts(),
        *users(paths, who, scratch),
        *rundir(paths),
        *var_dirs(paths),
        *machine_id(),
        *tmp_dirs(),
        *network(),
        *runtime_dirs(who, env),
        *tmpdir(env, home.shares_home),
        *namespaces(),
        *home.options,
        *capabilities(suid_bwrap),
    ]  # fmt: skip
    return BwrapCommand(bwrap, options, env)
