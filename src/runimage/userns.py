"""Can this host give an ordinary user a user namespace? If not, say which setting blocks it
and the command that fixes it, before bwrap fails with a less helpful message."""

from __future__ import annotations

import os

from runimage.log import Die
from runimage.settings import read_text

# (sysctl file, value that blocks, sysctl name, value that allows)
BLOCKERS = (
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "kernel.unprivileged_userns_clone", "1"),
    ("/proc/sys/user/max_user_namespaces", "0", "user.max_user_namespaces", "10000"),
    ("/proc/sys/kernel/userns_restrict", "1", "kernel.userns_restrict", "0"),
    (
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        "1",
        "kernel.apparmor_restrict_unprivileged_userns",
        "0",
    ),
)


def _fix(name: str, value: str) -> str:
    return (
        f"as root: sysctl -w {name}={value}, and to keep it: "
        f"echo {name}={value} > /etc/sysctl.d/98-runimage-userns.conf"
    )


def check(setuid_bwrap: bool) -> None:
    """Raises Die naming the blocking setting when unprivileged user namespaces are off."""
    if os.geteuid() == 0 or setuid_bwrap:
        return
    if not os.path.exists("/proc/self/ns/user"):
        raise Die(
            "The kernel does not support user namespaces",
            hint="install a setuid bwrap into the system, or use a kernel built with "
            "CONFIG_USER_NS",
        )
    for path, blocking, name, allowing in BLOCKERS:
        if read_text(path) == blocking:
            raise Die(f"User namespaces are disabled by {name}={blocking}", _fix(name, allowing))
