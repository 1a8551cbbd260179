"""The launcher's own modes: --run-help, --run-version, --run-shell, ... (and short forms).

Each mode is a click command named by its long flag; the short forms are aliases. Arguments
after the mode flag belong to the mode (for --run-shell, to the shell) and are passed through
untouched.
"""

from __future__ import annotations

import os
import sys

import click

from runimage import help as usage
from runimage.cli import Launch
from runimage.log import Die

ALIASES = {
    "--rH": "--run-help",
    "--rBwh": "--run-bwhelp",
    "--rV": "--run-version",
    "--rP": "--run-pkglist",
    "--rBin": "--run-binlist",
    "--rS": "--run-shell",
    "--rD": "--run-desktop",
    "--oL": "--overfs-list",
    "--oR": "--overfs-rm",
    "--rB": "--run-build",
    "--rU": "--run-update",
    "--rK": "--run-kill",
    "--rPm": "--run-procmon",
    "--rA": "--run-attach",
}

# Package listing commands by package manager, found by the file that marks each in the rootfs.
PACKAGE_LISTERS = (
    ("usr/bin/pacman", ["/usr/bin/pacman", "-Q"]),
    (
        "usr/bin/dpkg-query",
        ["/usr/bin/dpkg-query", "--show", "--showformat=${Package} ${Version}\\n"],
    ),
    ("sbin/apk", ["/sbin/apk", "info", "-v"]),
)

PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


class Modes(click.Group):
    """Resolves a mode flag or its short form; anything else is one clear error line."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        command = super().get_command(ctx, name)
        if command is None:
            raise Die(
                f"Unknown option: {cmd_name}",
                hint="see 'runimage --run-help' for the options",
                status=2,
            )
        return command


@click.group(cls=Modes, context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.pass_context
def modes(ctx: click.Context) -> None:
    """runimage modes."""


def _launch(ctx: click.Context) -> Launch:
    launch = ctx.obj
    assert isinstance(launch, Launch)
    return launch


def _quiet() -> None:
    """The informational modes print only what was asked for."""
    os.environ["QUIET_MODE"] = "1"
    os.environ["SANDBOX_NET"] = "0"


@modes.command("--run-help", context_settings=PASSTHROUGH)
def run_help() -> None:
    usage.show()


@modes.command("--run-version", context_settings=PASSTHROUGH)
@click.pass_context
def run_version(ctx: click.Context) -> None:
    launch = _launch(ctx)
    runtime = runtime_version(launch)
    if runtime:
        os.environ["RUNRUNTIME_VERSION"] = runtime
    lines = [
        f"RunImage version: {os.environ['RUNIMAGE_VERSION']}",
        f"RootFS version: {os.environ['RUNROOTFS_VERSION'] or 'unknown'}",
        f"Static version: {os.environ['RUNSTATIC_VERSION'] or 'unknown'}",
        f"RunImage runtime version: {runtime or 'none'}",
    ]
    _print("\n".join(lines))


def _print(text: str) -> None:
    """Prints to stdout, where there is one (a closed stdout is not an error here)."""
    if sys.stdout is not None:
        click.echo(text)


def runtime_version(launch: Launch) -> str:
    """The runtime's version, asked of the runtime itself (packed: the image, unpacked: the copy
    kept in static/ for building)."""
    if os.environ.get("RUNRUNTIME_VERSION"):
        return os.environ["RUNRUNTIME_VERSION"]
    import subprocess

    binary = launch.paths.image or launch.paths.runtime
    if not os.access(binary, os.X_OK):
        return ""
    try:
        result = subprocess.run(
            [binary, "--runtime-version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    words = result.stdout.split()
    return words[-1] if words else ""


@modes.command("--run-shell", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_shell(ctx: click.Context, args: tuple[str, ...]) -> int:
    launch = _launch(ctx)
    return launch.run([*launch.shell(), *args])


@modes.command("--run-bwhelp", context_settings=PASSTHROUGH)
@click.pass_context
def run_bwhelp(ctx: click.Context) -> int:
    _quiet()
    return _launch(ctx).run(["--help"])


@modes.command("--run-pkglist", context_settings=PASSTHROUGH)
@click.pass_context
def run_pkglist(ctx: click.Context) -> int:
    _quiet()
    launch = _launch(ctx)
    for marker, command in PACKAGE_LISTERS:
        if os.path.lexists(os.path.join(launch.paths.rootfs, marker)):
            return launch.run(command)
    raise Die(
        "The package manager cannot be detected",
        hint="the rootfs has none of pacman, dpkg or apk",
    )


@modes.command("--run-binlist", context_settings=PASSTHROUGH)
@click.pass_context
def run_binlist(ctx: click.Context) -> None:
    """Lists the executable files of the rootfs's /usr/bin."""
    bindir = os.path.join(_launch(ctx).paths.rootfs, "usr/bin")
    names = []
    with os.scandir(bindir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and os.access(entry.path, os.X_OK):
                names.append(entry.name)
    _print("\n".join(sorted(names)))


def _later(flag: str) -> None:
    raise Die(f"{flag} is not available in this build of runimage", hint="see README.md")


@modes.command("--run-build", context_settings=PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_build(ctx: click.Context, args: tuple[str, ...]) -> int:
    from runimage import build

    return build.build(_launch(ctx).paths, list(args))


for _flag in (
    "--run-desktop",
    "--overfs-list",
    "--overfs-rm",
    "--run-update",
    "--run-kill",
    "--run-procmon",
    "--run-attach",
):

    @modes.command(_flag, context_settings=PASSTHROUGH)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def _unavailable(args: tuple[str, ...], flag: str = _flag) -> None:
        _later(flag)


def run(launch: Launch, args: list[str]) -> int:
    """Runs the mode args[0] with the rest of args; returns the exit status."""
    try:
        result = modes.main(args=args, prog_name="runimage", obj=launch, standalone_mode=False)
    except click.ClickException as failure:
        raise Die(failure.format_message(), hint="see 'runimage --run-help'", status=2) from None
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        return 130
    if sys.stdout is not None:
        sys.stdout.flush()
    return result if isinstance(result, int) else 0
