"""The launcher's entry: `runimage {bwrap args} {executable} {args}` or one of the --run-*
modes.

Running a program is the hot path and imports only what it needs; the modes (--run-help,
--run-version, ...) are parsed with click in runimage.modes, imported only when one is asked for.
"""

from __future__ import annotations

import os
import sys

from runimage import homes, log, processes, rcfg, sandbox, settings, tools, userns, workdir
from runimage.log import Die
from runimage.settings import Identity, Paths, flag

# The packages whose versions stand for the portable tools as a whole.
STATIC_MAIN_PACKAGES = ("bubblewrap", "squashfuse", "squashfs-tools", "python3.11-minimal")


def refuse_root() -> None:
    if os.geteuid() == 0 and not flag("ALLOW_ROOT"):
        raise Die(
            "root user is not allowed!",
            hint="do not run runimage as root; if you really need to, set ALLOW_ROOT=1",
        )


# The help and version flags of most programs, as the first argument: runimage's own modes.
COMMON_FLAGS = {"--help": "--run-help", "-h": "--run-help", "--version": "--run-version"}


def is_mode(argument: str) -> bool:
    """True for the launcher's own flags (--run-*, --overfs-* and their short forms --rX, --oX),
    which never reach bwrap; bwrap's own options are lower case after the dashes."""
    if argument.startswith(("--run-", "--overfs-")):
        return True
    return len(argument) > 3 and argument[:3] in ("--r", "--o") and argument[3].isupper()


def export_environment(paths: Paths, who: Identity) -> None:
    """The variables the usage text lists under "Other environment variables", for the
    program inside and for the helpers the launcher starts."""
    rootfs_type = settings.read_text(os.path.join(paths.rootfs, ".type"))
    exported = {
        "RUNPID": str(os.getpid()),
        "RUNPPID": str(os.getppid()),
        "RUNDIR": paths.rundir,
        "RUNROOTFS": paths.rootfs,
        "RUNSTATIC": paths.static,
        "RUNIMAGEDIR": paths.imagedir,
        "RUNCONFIGDIR": paths.configdir,
        "RUNCACHEDIR": paths.cachedir,
        "RUNOVERFSDIR": paths.overfsdir,
        "SANDBOXHOMEDIR": paths.sandboxhomedir,
        "PORTABLEHOMEDIR": paths.portablehomedir,
        "RUNSRCNAME": paths.srcname,
        "RUNIMAGE_VERSION": settings.RUNIMAGE_VERSION,
        "RUNROOTFS_VERSION": settings.rootfs_version(paths.rootfs),
        "RUNROOTFSTYPE": rootfs_type,
        "RUNSTATIC_VERSION": static_version(paths),
        "RUNRUNTIME": paths.runtime,
        "RUNUSER": who.user,
        "RUNGROUP": who.group,
        "EGID": str(who.gid),
        "NVIDIA_DRIVERS_DIR": os.environ.get("NVIDIA_DRIVERS_DIR")
        or os.path.join(paths.imagedir, "nvidia-drivers"),
    }
    if paths.image:
        exported["RUNIMAGE"] = paths.image
    os.environ.update(exported)
    os.environ.setdefault("SYS_PATH", paths.sys_path)
    tools.export_all(paths)


def static_version(paths: Paths) -> str:
    """The portable tools' version: the Debian versions of the main ones, from static/.version
    ("package version" lines)."""
    text = settings.read_text(os.path.join(paths.static, ".version"))
    versions = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    main = [f"{name} {versions[name]}" for name in STATIC_MAIN_PACKAGES if name in versions]
    return ", ".join(main) or text.partition("\n")[0]


def check_rootfs(paths: Paths) -> None:
    if not os.path.isdir(paths.rootfs):
        raise Die(
            f"The rootfs is missing: '{paths.rootfs}'",
            hint="build it with 'make' or use a complete runimage",
        )
    if not (
        os.path.isdir(os.path.join(paths.rootfs, "usr"))
        and os.path.isdir(os.path.join(paths.rootfs, "etc"))
    ):
        raise Die(
            f"The rootfs is broken: '{paths.rootfs}' has no /usr or /etc",
            hint="rebuild it with 'make' or use a complete runimage",
        )


def default_shell(rootfs: str) -> list[str]:
    """RUN_SHELL, else the first of fish, zsh, bash, sh the rootfs has."""
    chosen = os.environ.get("RUN_SHELL", "").strip()
    if chosen:
        return split_command("RUN_SHELL", chosen)
    for name in ("fish", "zsh", "bash", "sh"):
        if os.path.lexists(os.path.join(rootfs, "usr/bin", name)):
            if name == "bash":
                return ["/usr/bin/bash", "--rcfile", "/etc/bash.bashrc"]
            return [f"/usr/bin/{name}"]
    return ["/bin/sh"]


def autorun_command(paths: Paths) -> list[str]:
    """The command of autorun mode: AUTORUN, or the name the image was started under when that
    names a program of the rootfs's /usr/bin (a link called htop runs /usr/bin/htop). Under any
    other name (a renamed copy) the image behaves as itself."""
    rootfs_type = os.environ.get("RUNROOTFSTYPE", "")
    name = paths.srcname
    program = os.path.join(paths.rootfs, "usr/bin", name)
    if not settings.own_name(name, rootfs_type) and "/" not in name and os.path.lexists(program):
        return [name]
    autorun = os.environ.get("AUTORUN", "").strip()
    if not autorun:
        return []
    return split_command("AUTORUN", autorun)


def split_command(variable: str, command: str) -> list[str]:
    """The words of a command line given in a variable, split as a shell would."""
    import shlex

    try:
        return shlex.split(command)
    except ValueError as failure:
        raise Die(
            f"{variable} is not a valid command line: {failure} in {command!r}",
            hint="balance its quotes",
        ) from None


def config_name(paths: Paths, args: list[str]) -> str:
    """The name whose .rcfg applies: the autorun program's, else the program asked for, else
    the container's own."""
    autorun = autorun_command(paths)
    if autorun:
        return os.path.basename(autorun[0])
    if args and not args[0].startswith("--"):
        return os.path.basename(args[0])
    return paths.srcname


class Launch:
    """Everything a run in the container needs, found once: paths, user, configuration files
    (which may set any variable, so they are read before anything else looks at one)."""

    def __init__(self, args: list[str]) -> None:
        self.paths = Paths(dict(os.environ))
        self.who = Identity()
        self.name = config_name(self.paths, args)
        self.config = rcfg.load(self.paths, self.name)
        export_environment(self.paths, self.who)
        bwrap = os.environ["BWRAP"]
        self.bwrap = bwrap if os.access(bwrap, os.X_OK) else ""
        self.suid_bwrap = tools.is_setuid(self.bwrap) and self.who.uid != 0
        if self.suid_bwrap:
            log.warning("Bubblewrap has the setuid bit!")

    def run(self, command: list[str]) -> int:
        """Runs command (bwrap options may come first) in the container; returns its status."""
        check_rootfs(self.paths)
        if not self.bwrap:
            raise Die("bwrap was not found", hint="install bubblewrap or use a complete runimage")
        userns.check(self.suid_bwrap)

        shell = default_shell(self.paths.rootfs)
        scratch: list[str] = []
        try:
            home = homes.choose(self.paths, self.name, self.who.user, self.who.uid)
            bwrap = sandbox.build(
                self.bwrap, self.suid_bwrap, self.paths, self.who, shell, scratch, home
            )
            extra = [*self.config.bwrap_args, *self.config.exec_args]
            if command[0] == "--":
                self._check_program(command[1], bwrap.env["PATH"])
            elif not extra and not command[0].startswith("-"):
                self._check_program(command[0], bwrap.env["PATH"])
            chdir, unseen = workdir.chdir_options([*bwrap.options, *extra, *command])
            if unseen:
                log.warning(f"The container does not show {unseen}: the program starts in /")
            return processes.run(bwrap.argv([*chdir, *extra, *command]), bwrap.env)
        finally:
            for path in scratch:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _check_program(self, name: str, search_path: str) -> None:
        if not sandbox.program_exists(name, search_path, self.paths.rootfs, self.paths.rundir):
            raise Die(
                f"No such program in the container: '{name}'",
                hint="check the name; 'runimage --run-binlist' lists /usr/bin",
            )

    def shell(self) -> list[str]:
        return default_shell(self.paths.rootfs)


def run_autorun(launch: Launch, autorun: list[str], args: list[str]) -> int:
    name = autorun[0]
    binary = os.path.join(launch.paths.rootfs, "usr/bin", name)
    if "/" in name or not os.path.lexists(binary):
        raise Die(
            f"Autorun program {name} not found in the container's /usr/bin",
            hint="name a program of /usr/bin ('runimage --run-binlist' lists them)",
        )
    log.info(f"Autorun mode: {' '.join(autorun)}")
    if args and args[0] == name:
        args = args[1:]
    return launch.run([f"/usr/bin/{name}", *autorun[1:], *args])


def dispatch(args: list[str]) -> int:
    refuse_root()
    if args and args[0].startswith("--runtime-"):
        if os.environ.get("RUNOFFSET"):
            raise Die(f"Unknown runtime option: {args[0]}", hint="see --runtime-help", status=2)
        raise Die(
            f"{args[0]} is an option of the packed runimage file's runtime",
            hint="use it on a runimage file, first on the command line; see --runtime-help",
            status=2,
        )
    program_only = bool(args) and args[0] == "--"
    if program_only:
        # Everything after -- is the program and its arguments, never runimage's or bwrap's.
        args = args[1:]
        if not args:
            raise Die("No program given after --", hint="runimage -- {program} {args}", status=2)
    launch = Launch(args)
    autorun = autorun_command(launch.paths)
    if autorun:
        return run_autorun(launch, autorun, args)
    if program_only:
        return launch.run(["--", *args])
    if args and args[0] in COMMON_FLAGS:
        # What users type first gets runimage's answer, not bwrap's usage (--run-bwhelp).
        args = [COMMON_FLAGS[args[0]], *args[1:]]
    if not args or is_mode(args[0]):
        from runimage import modes

        return modes.run(launch, args or ["--run-help"])
    return launch.run(args)


def main() -> int:
    try:
        return dispatch(sys.argv[1:])
    except Die as failure:
        log.error(failure.message, failure.hint)
        return failure.status
    except KeyboardInterrupt:
        return 130
    except OSError as failure:
        # Unexpected, so shown as it is (with a traceback under RUNIMAGE_DEBUG=1).
        if os.environ.get("RUNIMAGE_DEBUG") == "1":
            raise
        log.error(f"{failure.strerror or failure}: {failure.filename or 'output'}")
        return log.LAUNCHER_FAILURE
