"""Running the container's main process and ending what it leaves behind.

The launcher forks bwrap and waits for it, as a shell waits for a foreground job: its exit
status is the program's (bwrap reports a death by signal N as 128+N). The launcher is a child
subreaper (RunDir/Run makes it one before it starts Python, where it costs nothing), so the
processes the program leaves running in the background are re-parented to it; when the program
ends they are stopped too, unless ALLOW_BG=1. Signals sent to the launcher itself are passed on
to the program; a Ctrl-C typed at the terminal already reached the program, so it is not sent
twice.
"""

from __future__ import annotations

import os
import time

from runimage import log

# typing costs milliseconds at every start; mypy reads a local TYPE_CHECKING the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from types import FrameType
else:
    # The C module under signal: the same functions and numbers, without the enums that cost
    # 3 ms at every start.
    import _signal as signal

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Python ignores these for itself; a program inside gets them back at their defaults, so that
# `yes | head -1` ends quietly, as on the host.
IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# How long background processes get to end after SIGTERM before SIGKILL.
STOP_GRACE_S = 1.0
# How long the program gets to end after SIGTERM once the launcher's parent is gone (RunDir/Run
# killed) before SIGKILL: nobody is left to wait for it.
ORPHANED_GRACE_S = 2


def _drop_ambient_capabilities() -> None:
    """Inside a runimage container the launcher has the container's capabilities, with which an
    unprivileged bwrap refuses to start: a nested container starts without them (as nocap)."""
    import ctypes

    ctypes.CDLL(None).prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def exit_status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


class Container:
    """A running bwrap, with the pipe on which it reports the pid of the sandboxed program."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.parent = os.getppid()
        self.info_read, info_write = os.pipe()
        self.child_pid = 0
        self.pid = os.fork()
        if self.pid == 0:
            self._exec(argv, env, info_write)
        os.close(info_write)

    def _exec(self, argv: list[str], env: dict[str, str], info_write: int) -> None:
        try:
            os.close(self.info_read)
            for number in (*FORWARDED, *IGNORED_BY_PYTHON):
                signal.signal(number, signal.SIG_DFL)
            if os.environ.get("INSIDE_RUNIMAGE") == "1":
                _drop_ambient_capabilities()
            argv = [argv[0], "--info-fd", str(info_write), *argv[1:]]
            os.set_inheritable(info_write, True)
            os.execve(argv[0], argv, env)
        except OSError as failure:
            os.write(2, f"runimage: cannot run {argv[0]}: {failure.strerror}\n".encode())
        os._exit(log.LAUNCHER_FAILURE)

    def sandboxed_pid(self) -> int:
        """The pid of the program inside, read from bwrap's --info-fd report."""
        if not self.child_pid:
            os.set_blocking(self.info_read, False)
            try:
                report = os.read(self.info_read, 4096).decode(errors="replace")
            except OSError:
                report = ""
            key = '"child-pid":'
            if key in report:
                digits = report.split(key, 1)[1].lstrip().split(",")[0].split("}")[0]
                self.child_pid = int(digits.strip() or 0)
        return self.child_pid

    def forward(self, number: int, _frame: FrameType | None = None) -> None:
        if number == signal.SIGINT and _terminal_sent_it():
            return
        _send(self.sandboxed_pid() or self.pid, number)
        if number == signal.SIGTERM and os.getppid() != self.parent:
            # The SIGTERM of RunDir/Run's death: the program must end even if it ignores it.
            signal.signal(signal.SIGALRM, self._kill)
            signal.alarm(ORPHANED_GRACE_S)

    def _kill(self, _number: int, _frame: FrameType | None = None) -> None:
        _send(self.sandboxed_pid() or self.pid, signal.SIGKILL)
        _send(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Waits for bwrap; returns its exit status."""
        previous = {number: signal.signal(number, self.forward) for number in FORWARDED}
        try:
            while True:
                try:
                    _pid, status = os.waitpid(self.pid, 0)
                    return exit_status(status)
                except ChildProcessError:
                    return log.LAUNCHER_FAILURE
                except InterruptedError:
                    continue
        finally:
            signal.alarm(0)
            for number, handler in previous.items():
                signal.signal(number, handler)
            os.close(self.info_read)


def _send(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _terminal_sent_it() -> bool:
    """True when the launcher is in the terminal's foreground process group: a typed Ctrl-C
    then went to every process of the group, the program included."""
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def children() -> list[int]:
    """Pids of the launcher's own children (background processes re-parented to it)."""
    found: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as file:
                found += [int(pid) for pid in file.read().split()]
        except OSError:
            continue
    return found


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_leftovers() -> None:
    """Stops the background processes the program left: SIGTERM, then SIGKILL after a grace
    period. Their own children re-parent to the launcher as they die, so loop until none."""
    deadline = time.monotonic() + STOP_GRACE_S
    sent: set[int] = set()
    while True:
        _reap()
        pids = children()
        if not pids:
            return
        late = time.monotonic() > deadline
        for pid in pids:
            if late or pid not in sent:
                _send(pid, signal.SIGKILL if late else signal.SIGTERM)
                sent.add(pid)
        time.sleep(0.01)


def run(argv: list[str], env: dict[str, str]) -> int:
    """Runs bwrap with argv and env; returns the program's exit status."""
    log.debug("running: " + " ".join(argv))
    allow_bg = os.environ.get("ALLOW_BG") == "1"
    container = Container(argv, env)
    status = container.wait()
    if not allow_bg:
        stop_leftovers()
    return status
