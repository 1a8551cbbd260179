"""Messages to the user: one line each, on stderr, with a timestamp.

Errors always show; QUIET_MODE=1 hides info and warnings, NO_WARN=1 hides warnings. Without a
terminal a desktop notification goes out too (notify-send), unless DONT_NOTIFY=1 (errors are
always notified). Colour only on a terminal.
"""

from __future__ import annotations

import os
import sys
import time

RED = "\033[1;91m"
GREEN = "\033[1;92m"
YELLOW = "\033[1;33m"
BLUE = "\033[1;94m"
RESET = "\033[0m"

# Exit status of the launcher's own failures, so they differ from the program's own status.
LAUNCHER_FAILURE = 127

_debug = os.environ.get("RUNIMAGE_DEBUG") == "1"


class Die(Exception):
    """A failure that ends the launcher with one error line and an exit status."""

    def __init__(self, message: str, hint: str = "", status: int = LAUNCHER_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status


def _flag(name: str) -> bool:
    return os.environ.get(name) == "1"


def _on_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (OSError, ValueError):
        return False


def _notify(title: str, text: str) -> None:
    """Sends a desktop notification when there is no terminal to show the message on."""
    if os.isatty(0) or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    for directory in os.environ.get("PATH", "").split(":"):
        tool = os.path.join(directory or ".", "notify-send")
        if os.access(tool, os.X_OK):
            try:
                os.posix_spawn(tool, [tool, "-a", title, text], dict(os.environ))
            except OSError:
                pass
            return


def _emit(label: str, colour: str, text: str) -> None:
    stamp = time.strftime("%Y.%m.%d %H:%M:%S")
    line = f"[ {label} ][{stamp}]: {text}"
    if _on_terminal():
        line = f"{colour}{line}{RESET}"
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def info(text: str) -> None:
    if _flag("QUIET_MODE"):
        return
    _emit("INFO", GREEN, text)
    if not _flag("DONT_NOTIFY"):
        _notify("RunImage Info", text)


def warning(text: str) -> None:
    if _flag("QUIET_MODE") or _flag("NO_WARN"):
        return
    _emit("WARNING", YELLOW, text)
    if not _flag("DONT_NOTIFY"):
        _notify("RunImage Warning", text)


def error(text: str, hint: str = "") -> None:
    message = f"{text} ({hint})" if hint else text
    _emit("ERROR", RED, message)
    _notify("RunImage Error", message)


def debug(text: str) -> None:
    if _debug:
        _emit("DEBUG", BLUE, text)
