"""Packing a RunDir into one runimage file: mksquashfs of the RunDir (or of the overlay's merged
view in OverlayFS mode) behind the runtime.

The new file is written beside the old one under a temporary name and renamed over it only when
complete, so a failed or interrupted build (a full disk, Ctrl-C) leaves the old file as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

from runimage import log, tools
from runimage.log import Die
from runimage.settings import OWN_NAMES, Paths, flag

COMPRESSIONS = ("lz4", "zstd", "xz")
PR_SET_PDEATHSIG = 1
DEFAULT_ZSTD_LEVEL = 19
# Names of the launcher's own helpers: a build started under one of them is named runimage.
HELPER_NAMES = ("Run", "runbuild", "rundesktop", "runupdate", "rpidsmon")
# What a build leaves out of a writable rootfs: caches that a package manager fills again.
ROOTFS_CACHES = (
    "var/cache/apt/archives",
    "var/cache/pacman/pkg",
    "var/lib/pacman/sync",
    "var/tmp",
)


class BuildRequest:
    """What `--run-build {/path/new_name} {-zstd|-xz|-lz4} {level}` asks for."""

    def __init__(self, target: str, compression: str, level: int) -> None:
        self.target = target
        self.compression = compression
        self.level = level


def _zstd_level(text: str) -> int | None:
    if text.isdigit() and 1 <= int(text) <= 19:
        return int(text)
    return None


def parse_arguments(args: list[str], srcname: str, rootfs_type: str) -> BuildRequest:
    """Reads the build arguments and CMPRS_ALGO, ZSDT_CMPRS_LVL (or ZSTD_CMPRS_LVL),
    BUILD_WITH_EXTENSION."""
    words = list(args)
    target = "" if not words or words[0].startswith("-") else words.pop(0)
    compression = (os.environ.get("CMPRS_ALGO") or "lz4").lower()
    level_text = os.environ.get("ZSDT_CMPRS_LVL") or os.environ.get("ZSTD_CMPRS_LVL") or ""

    for word in words:
        if word in ("-lz4", "-zstd", "-xz"):
            compression = word[1:]
        elif _zstd_level(word) is not None:
            level_text = word
        else:
            raise Die(
                f"Unknown build argument: '{word}'", hint="use {/path/name} {-zstd|-xz|-lz4} {1-19}"
            )
    if compression not in COMPRESSIONS:
        raise Die(f"Unknown compression '{compression}'", hint="CMPRS_ALGO is one of zstd, xz, lz4")
    if level_text and _zstd_level(level_text) is None:
        raise Die(f"Invalid zstd level '{level_text}'", hint="the level is a number from 1 to 19")
    if level_text and compression == "lz4" and not os.environ.get("CMPRS_ALGO"):
        compression = "zstd"

    return BuildRequest(
        _target_path(target, srcname, compression, rootfs_type),
        compression,
        _zstd_level(level_text) or DEFAULT_ZSTD_LEVEL,
    )


def _target_path(target: str, srcname: str, compression: str, rootfs_type: str) -> str:
    own = srcname.startswith(OWN_NAMES) or srcname in HELPER_NAMES or not srcname
    name = "runimage" if own else srcname
    if not target:
        path = os.path.abspath(name)
    elif os.path.isdir(target):
        path = os.path.join(os.path.abspath(target), name)
    elif not target.endswith("/") and os.path.isdir(os.path.dirname(os.path.abspath(target))):
        path = os.path.abspath(target)
    else:
        # A trailing slash names a directory to build into: one that does not exist is an error.
        missing = (
            os.path.abspath(target)
            if target.endswith("/")
            else os.path.dirname(os.path.abspath(target))
        )
        raise Die(
            f"The build directory does not exist: '{missing}'",
            hint="create it first or name another path",
        )
    if flag("BUILD_WITH_EXTENSION"):
        extension = {"zstd": ".zst", "xz": ".xz", "lz4": ".lz4"}[compression]
        path += extension + (f".{rootfs_type}" if rootfs_type else "")
    # A link to an image: the file it points to is built anew, and the link kept.
    return os.path.realpath(path) if os.path.islink(path) else path


def compression_options(request: BuildRequest) -> list[str]:
    if request.compression == "zstd":
        return ["-b", "1M", "-comp", "zstd", "-Xcompression-level", str(request.level)]
    if request.compression == "xz":
        return ["-b", "1M", "-comp", "xz", "-Xdict-size", "100%"]
    # 128 KiB blocks, the kernel's read-ahead window over FUSE: a start decompresses less
    # than with 256 KiB for 2% more size (64 KiB: a little less again, for 7% more).
    return ["-b", "128K", "-comp", "lz4", "-Xhc"]


def elf_end(data: bytes) -> int:
    """Where an ELF file's data ends: after its section header table (the squashfs of a
    runimage starts there)."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise Die("The runtime is not a 64-bit ELF file", hint="rebuild it with 'make'")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return int(shoff + shentsize * shnum)


def read_runtime(paths: Paths) -> bytes:
    """The runtime to put in front: static/runtime, or the running image's own."""
    sources = [paths.runtime]
    if paths.image:
        sources.append(paths.image)
    for source in sources:
        try:
            with open(source, "rb") as file:
                head = file.read(4 * 1024 * 1024)
        except OSError:
            continue
        return head[: elf_end(head)]
    raise Die(f"The runimage runtime was not found: '{paths.runtime}'", hint="rebuild with 'make'")


def source_dir(paths: Paths) -> str:
    """The tree to pack: the overlay's merged view in OverlayFS mode, else the RunDir."""
    merged = os.environ.get("OVERFS_MNT", "")
    if merged and os.path.isdir(os.path.join(merged, "rootfs")):
        return merged
    return paths.rundir


def tidy_rootfs(rootfs: str, packed: bool) -> None:
    """Stamps the build time and empties package caches, where the rootfs is writable (a packed
    image's is not, unless in OverlayFS mode: no news, so no warning)."""
    if not os.access(rootfs, os.W_OK):
        skipped = "The rootfs is read-only: build timestamp and cleanup skipped"
        if packed:
            log.debug(skipped)
        else:
            log.warning(skipped)
        return
    with open(os.path.join(rootfs, ".build"), "w", encoding="utf-8") as file:
        file.write(time.strftime("%y.%m.%d.%H%M%S") + "\n")
    for cache in ROOTFS_CACHES:
        directory = os.path.join(rootfs, cache)
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(directory, entry)
            if os.path.isfile(path) or os.path.islink(path):
                os.unlink(path)
            elif cache == "var/tmp":
                shutil.rmtree(path, ignore_errors=True)


def _mksquashfs(
    mksquashfs: str, source: str, output: str, offset: int, request: BuildRequest
) -> None:
    command = [
        mksquashfs, source, output,
        "-offset", str(offset),
        "-root-owned", "-no-xattrs", "-noappend", "-mkfs-time", "0",
        # Identical files are stored once all the same. The runtime gives such twins one inode
        # number (one copy in the page cache), so a tree it serves shows them as one file, and
        # without this a rebuild would turn them into hard links.
        "-no-hardlinks",
        *compression_options(request),
    ]  # fmt: skip
    # A progress bar on a terminal, else only errors. mksquashfs draws its bar only on a
    # terminal and not with -quiet, so on one it writes to a pseudo-terminal of its own, and
    # _show_progress passes on only the bar.
    terminal = os.isatty(sys.stderr.fileno())
    command += ["-progress"] if terminal else ["-quiet", "-no-progress"]
    log.debug("running: " + " ".join(command))
    reader, writer = _pseudo_terminal() if terminal else (-1, sys.stderr.fileno())
    try:
        process = subprocess.Popen(command, stdout=writer, preexec_fn=_die_with_parent)
    finally:
        if reader >= 0:
            os.close(writer)
    try:
        if reader >= 0:
            _show_progress(reader)
        status = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        if reader >= 0:
            os.close(reader)
    if status != 0:
        raise Die(f"mksquashfs failed with status {status}", hint="see its output above")


def _pseudo_terminal() -> tuple[int, int]:
    """A pseudo-terminal as wide as the user's: its reading end and its terminal end."""
    import termios

    reader, writer = os.openpty()
    rows, columns, *_ = struct.unpack(
        "HHHH", fcntl.ioctl(sys.stderr.fileno(), termios.TIOCGWINSZ, bytes(8))
    )
    # A terminal that does not know its size says 0 columns: mksquashfs then draws nothing.
    size = struct.pack("HHHH", rows or 24, columns or 80, 0, 0)
    fcntl.ioctl(writer, termios.TIOCSWINSZ, size)
    os.set_inheritable(reader, False)
    return reader, writer


def _show_progress(reader: int) -> None:
    """Passes mksquashfs's progress bar ('[===/  ] 1802/2551  70%', redrawn after each carriage
    return) on to stderr, and drops the rest of its output: the summary of the filesystem."""
    pending = b""
    shown = False
    while True:
        try:
            chunk = os.read(reader, 4096)
        except OSError:
            # EIO: the pseudo-terminal's other end is closed, mksquashfs has ended.
            break
        if not chunk:
            break
        *pieces, pending = re.split(rb"[\r\n]", pending + chunk)
        for piece in pieces:
            if piece.startswith(b"[") and piece.rstrip().endswith(b"%"):
                sys.stderr.buffer.write(b"\r" + piece)
                sys.stderr.flush()
                shown = True
    if shown:
        sys.stderr.write("\n")


def _write_runtime(output: str, runtime: bytes) -> None:
    """Writes the runtime into the room mksquashfs left at the start of the new file. That room
    is a hole, which takes new disk blocks now: on a full disk the write falls short, and the
    build fails rather than leave a file that cannot start."""
    descriptor = os.open(output, os.O_WRONLY)
    try:
        written = 0
        while written < len(runtime):
            count = os.pwrite(descriptor, runtime[written:], written)
            if count == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += count
        os.fsync(descriptor)
    except OSError as failure:
        raise Die(
            f"Cannot write the runtime into '{output}': {failure.strerror}",
            hint="free some space where the new file goes, or build elsewhere",
        ) from None
    finally:
        os.close(descriptor)
    os.chmod(output, 0o755)


def _remove(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)


def _replace(new: str, target: str) -> None:
    if os.path.exists(target) and flag("KEEP_OLD_BUILD"):
        log.info(f"Saving old RunImage: '{target}.old'")
        os.replace(target, target + ".old")
    os.replace(new, target)


def _die_with_parent() -> None:
    """In mksquashfs: end with the launcher, even when the launcher is killed with SIGKILL."""
    import ctypes

    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Interrupted(BaseException):
    """A signal that ends the build: the partial file is removed, the old one kept."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _ignore_endings() -> None:
    """One ending is enough: a second one (a signal to the process group arrives from the
    terminal and again from Run, which passes it on) must not cut the clean-up short."""
    for ending in (*ENDING_SIGNALS, signal.SIGINT):
        signal.signal(ending, signal.SIG_IGN)


def _interrupt(number: int, _frame: object) -> None:
    _ignore_endings()
    raise Interrupted(number)


def _claim(new: str) -> int:
    """Creates the new file and locks it for the length of the build: a later build removes a
    partial file only when no build holds its lock (flock works across PID namespaces, where
    the PID in the name may belong to a build the later one cannot see)."""
    descriptor = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def _remove_stale_partials(target: str) -> None:
    """Removes what builds killed with SIGKILL left: '<target>.new<PID>' files of ours that no
    build holds and that begin as a build's file does (a hole for the runtime, or the runtime).
    Anything else of that name is left alone."""
    directory, name = os.path.split(target)
    prefix = name + ".new"
    for entry in os.listdir(directory or "."):
        if entry.startswith(prefix) and entry[len(prefix) :].isdigit():
            path = os.path.join(directory, entry)
            if _is_abandoned_build(path):
                log.info(f"Removing the partial file of an interrupted build: '{entry}'")
                _remove(path)


def _is_abandoned_build(path: str) -> bool:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid():
            return False
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return os.pread(descriptor, 4, 0) in (b"", b"\0\0\0\0", b"\x7fELF")
    except OSError:
        # BlockingIOError: a build holds it.
        return False
    finally:
        os.close(descriptor)


def _check_writable(target: str) -> None:
    directory = os.path.dirname(target)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise Die(f"Cannot write to '{directory}'", hint="build into a directory you can write to")


def build(paths: Paths, args: list[str]) -> int:
    """Packs a new runimage file; returns 0 or raises Die."""
    log.info("RunImage build")
    request = parse_arguments(args, paths.srcname, os.environ.get("RUNROOTFSTYPE", ""))
    _check_writable(request.target)
    _remove_stale_partials(request.target)
    mksquashfs = os.environ.get("MKSQFS") or tools.locate(paths, "SYS_MKSQFS", "mksquashfs")
    if not os.access(mksquashfs, os.X_OK):
        raise Die("mksquashfs was not found", hint="install squashfs-tools or use a full RunDir")
    runtime = read_runtime(paths)
    source = source_dir(paths)

    log.info(
        f"Compression: {request.compression}"
        + (f", level {request.level}" if request.compression == "zstd" else "")
    )
    tidy_rootfs(os.path.join(source, "rootfs"), packed=bool(paths.image))
    log.info(f"Creating new RunImage: '{request.target}'")
    new = f"{request.target}.new{os.getpid()}"
    # SIGINT too: Python's KeyboardInterrupt would let a second one cut the clean-up short.
    for ending in (*ENDING_SIGNALS, signal.SIGINT):
        signal.signal(ending, _interrupt)
    lock = -1
    try:
        lock = _claim(new)
        _mksquashfs(mksquashfs, source, new, len(runtime), request)
        _write_runtime(new, runtime)
        _replace(new, request.target)
    except (KeyboardInterrupt, Interrupted) as stop:
        _ignore_endings()
        _remove(new)
        number = stop.number if isinstance(stop, Interrupted) else int(signal.SIGINT)
        message = "The build was interrupted: the old file is unchanged"
        raise Die(message, status=128 + number) from None
    except BaseException:
        _remove(new)
        raise
    finally:
        if lock >= 0:
            os.close(lock)

    size_mb = os.path.getsize(request.target) / (1024 * 1024)
    log.info(f"The build is complete! Final size: {size_mb:.1f} MB")
    return 0
