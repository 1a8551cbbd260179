"""Where the program starts inside the container: the directory it was started from, where the
container shows that same host directory, else /.

bwrap on its own tries the same path inside and, where that fails, changes to $HOME: a program
started in /opt/project would then run in the user's home, and `rm build.log` would remove the
home's file. Inside, the same path may also be the rootfs's own directory (/opt, /srv) and not
the host's. So the launcher works out from the bwrap options which host directory each path
inside shows, and passes --chdir to the host's directory where it can be seen (under the same
path, or another one, e.g. the RunDir at /var/RunDir), else / with a warning, where relative
paths meet the container's own files.
"""

from __future__ import annotations

import os

# bwrap options that mount a host path (source, destination), and those that put something
# else at a destination, by the number of arguments they take.
HOST_MOUNTS = {
    "--bind", "--bind-try", "--ro-bind", "--ro-bind-try", "--dev-bind", "--dev-bind-try",
}  # fmt: skip
OTHER_MOUNTS = {"--tmpfs", "--proc", "--dev", "--mqueue", "--overlay", "--tmp-overlay"}
ONE_ARGUMENT = {
    "--args", "--argv0", "--block-fd", "--cap-add", "--cap-drop", "--chdir", "--dir",
    "--exec-label", "--file-label", "--gid", "--hostname", "--info-fd", "--json-status-fd",
    "--lock-file", "--overlay-src", "--perms", "--pidns", "--remount-ro", "--seccomp",
    "--add-seccomp-fd", "--size", "--sync-fd", "--uid", "--unsetenv", "--userns",
    "--userns2", "--userns-block-fd", "--tmp-overlay", "--tmpfs", "--proc", "--dev", "--mqueue",
}  # fmt: skip
TWO_ARGUMENTS = {
    *HOST_MOUNTS, "--setenv", "--symlink", "--file", "--bind-data", "--ro-bind-data", "--chmod",
    "--ro-overlay",
}  # fmt: skip
THREE_ARGUMENTS = {"--overlay"}
NO_ARGUMENT = {
    "--unshare-all", "--share-net", "--unshare-user", "--unshare-user-try", "--unshare-ipc",
    "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup",
    "--unshare-cgroup-try", "--disable-userns", "--assert-userns-disabled", "--clearenv",
    "--new-session", "--die-with-parent", "--as-pid-1", "--level-prefix",
}  # fmt: skip


def mounts(options: list[str]) -> tuple[list[tuple[str, str | None]], bool, int]:
    """The mounts of bwrap options in order, as (destination, host source or None), whether the
    options choose a working directory themselves (--chdir), and the index of the first word
    that is not a bwrap option it knows (the program)."""
    found: list[tuple[str, str | None]] = []
    chooses = False
    index = 0
    while index < len(options) and options[index].startswith("--"):
        option = options[index]
        if option in NO_ARGUMENT:
            count = 0
        elif option in ONE_ARGUMENT:
            count = 1
        elif option in TWO_ARGUMENTS:
            count = 2
        elif option in THREE_ARGUMENTS:
            count = 3
        else:
            break
        arguments = options[index + 1 : index + 1 + count]
        if len(arguments) < count:
            break
        if option in HOST_MOUNTS:
            found.append((_normal(arguments[1]), _normal(arguments[0])))
        elif option in OTHER_MOUNTS:
            found.append((_normal(arguments[-1]), None))
        chooses = chooses or option == "--chdir"
        index += 1 + count
    return found, chooses, index


def _normal(path: str) -> str:
    """path without . and .. parts, repeated slashes or a trailing one; relative paths are
    taken from the working directory, as bwrap takes them. (normpath keeps a leading //.)"""
    path = os.path.normpath(path if path.startswith("/") else os.path.join(_cwd_or_root(), path))
    return "/" + path.lstrip("/")


def _cwd_or_root() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return "/"


def _within(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top + "/")


def _moved(path: str, top: str, new_top: str) -> str:
    """path, which lies within top, as it lies within new_top."""
    rest = path[len(top) :].lstrip("/")
    return os.path.join(new_top, rest) if rest else new_top


def shown_at(inside: str, found: list[tuple[str, str | None]]) -> str | None:
    """The host path that the container shows at path inside, or None where it shows its own
    (the rootfs, a tmpfs). The last mount that covers a path is the one on top."""
    shown: str | None = None
    for destination, source in found:
        if _within(inside, destination):
            shown = None if source is None else _moved(inside, destination, source)
    return shown


def inside_path(host_dir: str, found: list[tuple[str, str | None]]) -> str | None:
    """Where the container shows host directory host_dir: its own path where it can, else the
    first other place (the rootfs's /etc for RunDir/rootfs/etc); None where it is not shown."""
    candidates = [host_dir]
    for destination, source in found:
        if source is not None and _within(host_dir, source):
            candidates.append(_moved(host_dir, source, destination))
    for candidate in candidates:
        if shown_at(candidate, found) == host_dir:
            return candidate
    return None


def chdir_options(options: list[str]) -> tuple[list[str], str]:
    """The --chdir for bwrap options (the launcher's, then the user's), and the host directory
    that the container does not show ('' where it does, or where the options chose one)."""
    found, chooses, _ = mounts(options)
    if chooses:
        return [], ""
    try:
        host_dir = os.getcwd()
    except FileNotFoundError:
        return ["--chdir", "/"], "a deleted directory"
    # A directory the user cannot enter (sudo -u from another's home): bwrap could not either.
    inside = inside_path(host_dir, found) if os.access(host_dir, os.X_OK) else None
    if inside is None:
        # From the host's /, the container's / is where a user expects to be.
        return ["--chdir", "/"], "" if host_dir == "/" else host_dir
    return ["--chdir", inside], ""
