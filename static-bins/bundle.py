#!/usr/bin/env python3
"""Turn Debian binaries from a tools chroot into portable bundles for RunDir/static.

    python3 static-bins/bundle.py --chroot CHROOT --out OUTDIR

Each binary's ELF dynamic section (DT_NEEDED, DT_RPATH, DT_RUNPATH) is read with
pyelftools; the libraries it needs are looked up inside the chroot (never on the
build host), recursively, and copied with the chroot's dynamic loader. The result:

    OUTDIR/.version                "name version" of the Debian packages bundled
    OUTDIR/.bundle/bin/<name>      the real ELF binaries
    OUTDIR/.bundle/bin/.exec-stub  static program that starts them through the loader
    OUTDIR/.bundle/lib/            every library, ld-linux-x86-64.so.2, python3.11/
    OUTDIR/.bundle/loader/<name>   symlink to the loader: the process is named <name>
    OUTDIR/<name>                  relative symlink to .bundle/bin/.exec-stub
    OUTDIR/launcher/               the launcher's Python dependencies

The stub lives next to the real interpreter so that Python, started with the
absolute path of OUTDIR/python3 as argv[0], finds its standard library by
resolving that symlink (sys.prefix is OUTDIR/.bundle) without PYTHONHOME.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

log = logging.getLogger("bundle")

LOADER = "ld-linux-x86-64.so.2"
STUB = ".exec-stub"
PYTHON_VERSION = "3.11"

# Command name in OUTDIR -> the binary in the chroot.
COMMANDS: dict[str, str] = {
    "bwrap": "/usr/bin/bwrap",
    "squashfuse": "/usr/bin/squashfuse",
    "squashfuse_ll": "/usr/bin/squashfuse_ll",
    "fuse-overlayfs": "/usr/bin/fuse-overlayfs",
    "unionfs": "/usr/bin/unionfs",
    "mksquashfs": "/usr/bin/mksquashfs",
    "unsquashfs": "/usr/bin/unsquashfs",
    "slirp4netns": "/usr/bin/slirp4netns",
    "bash": "/usr/bin/bash",
    "socat": "/usr/bin/socat",
    "fusermount3": "/usr/bin/fusermount3",
    "python3": f"/usr/bin/python{PYTHON_VERSION}",
}

# Loaded with dlopen() by glibc (thread cancellation and unwinding), so no
# DT_NEEDED names them.
DLOPENED = ("libgcc_s.so.1",)

# The glibc defaults after ld.so.conf (x86_64 multiarch).
DEFAULT_LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)

# Left out of the bundled standard library.
STDLIB_PRUNED_TOP = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "distutils",
        "site-packages",
        "dist-packages",
        f"config-{PYTHON_VERSION}-x86_64-linux-gnu",
    }
)
STDLIB_PRUNED_ANYWHERE = frozenset({"__pycache__", "test", "tests", "idle_test"})
STDLIB_PRUNED_FILES = frozenset({"sitecustomize.py", "EXTERNALLY-MANAGED"})
STDLIB_PRUNED_PREFIXES = ("_test", "_ctypes_test.", "_xxtestfuzz.", "xxlimited")

# The launcher's dependencies, from the chroot's dist-packages.
LAUNCHER_MODULES = ("click", "psutil", "pyroute2", "Xlib", "elftools", "six.py")
LAUNCHER_METADATA_PREFIXES = (
    "click-",
    "psutil-",
    "pyroute2-",
    "python_xlib-",
    "pyelftools-",
    "six-",
)


class BundleError(Exception):
    """A failure the user can act on; printed as one line."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads from one ELF file."""

    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    interp: str | None


def read_elf(path: Path) -> ElfInfo | None:
    """Dynamic section of an x86_64 ELF file; None for anything else."""
    try:
        with path.open("rb") as f:
            elf: Any = ELFFile(f)
            if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                return None
            return _elf_info(elf)
    except (ELFError, OSError):
        return None


def _elf_info(elf: Any) -> ElfInfo:
    # pyelftools is typed only in newer releases than Debian's: handled as Any.
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    interp = None
    for segment in elf.iter_segments():
        if isinstance(segment, InterpSegment):
            interp = str(segment.get_interp_name())
    for section in elf.iter_sections():
        if not isinstance(section, DynamicSection):
            continue
        tag: Any
        for tag in section.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(tag.needed)
            elif tag.entry.d_tag == "DT_RPATH":
                rpath.extend(p for p in tag.rpath.split(":") if p)
            elif tag.entry.d_tag == "DT_RUNPATH":
                runpath.extend(p for p in tag.runpath.split(":") if p)
    return ElfInfo(tuple(needed), tuple(rpath), tuple(runpath), interp)


class Chroot:
    """A directory tree whose absolute symlinks point inside itself."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def host(self, path: str) -> Path:
        """The build host's path for a path inside the chroot (no symlinks followed)."""
        return self.root / path.lstrip("/")

    def resolve(self, path: str) -> str:
        """Follow symlinks the way the kernel would with the chroot as /."""
        pending = [p for p in path.split("/") if p]
        done: list[str] = []
        links = 0
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = self.root.joinpath(*done, part)
            if not candidate.is_symlink():
                done.append(part)
                continue
            links += 1
            if links > 40:
                raise BundleError(f"{path}: too many levels of symbolic links in {self.root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            pending[:0] = [p for p in target.split("/") if p]
        return "/" + "/".join(done)

    def is_file(self, path: str) -> bool:
        return self.host(self.resolve(path)).is_file()

    def library_dirs(self) -> list[str]:
        """ld.so.conf directories followed by the loader's built-in ones."""
        dirs: list[str] = []
        self._read_ld_so_conf("/etc/ld.so.conf", dirs, depth=0)
        for default in DEFAULT_LIBRARY_DIRS:
            if default not in dirs:
                dirs.append(default)
        return dirs

    def _read_ld_so_conf(self, path: str, dirs: list[str], depth: int) -> None:
        host = self.host(self.resolve(path))
        if depth > 8 or not host.is_file():
            return
        for raw in host.read_text(errors="replace").splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("hwcap "):
                continue
            if line.startswith("include "):
                for pattern in line.split()[1:]:
                    if not pattern.startswith("/"):
                        pattern = os.path.join(os.path.dirname(path), pattern)
                    for match in sorted(glob.glob(str(self.host(pattern)))):
                        inner = "/" + os.path.relpath(match, self.root)
                        self._read_ld_so_conf(inner, dirs, depth + 1)
            elif line.startswith("/") and line not in dirs:
                dirs.append(line.rstrip("/") or "/")


@dataclass
class Closure:
    """Every library a set of ELF files needs, by the name the loader looks for."""

    libraries: dict[str, str] = field(default_factory=dict)  # soname -> resolved chroot path
    requested: dict[str, str] = field(default_factory=dict)  # soname -> path before symlinks
    loader: str | None = None
    users: dict[str, list[str]] = field(default_factory=dict)  # soname -> who needs it


class Resolver:
    """Finds DT_NEEDED libraries inside a chroot, recursively, as glibc's ld.so would."""

    def __init__(self, chroot: Chroot) -> None:
        self.chroot = chroot
        self.system_dirs = chroot.library_dirs()

    def search_dirs(self, origin: str, info: ElfInfo, inherited_rpath: Iterable[str]) -> list[str]:
        """Directories tried for one object's DT_NEEDED names, in the loader's order.

        The flat bundle library directory (--library-path) comes first at run time;
        RUNPATH/RPATH only matter here to find the right file in the chroot.
        """
        expand = [self._expand_origin(p, origin) for p in info.runpath]
        if not info.runpath:
            rpath = [self._expand_origin(p, origin) for p in info.rpath]
            return [*rpath, *inherited_rpath, *self.system_dirs]
        return [*expand, *self.system_dirs]

    @staticmethod
    def _expand_origin(entry: str, origin: str) -> str:
        directory = os.path.dirname(origin)
        for token in ("${ORIGIN}", "$ORIGIN"):
            entry = entry.replace(token, directory)
        return entry

    def find(self, name: str, dirs: Iterable[str]) -> tuple[str, str] | None:
        """(path asked for, resolved path) of the x86_64 ELF library `name`, or None."""
        candidates = [name] if "/" in name else [f"{d.rstrip('/')}/{name}" for d in dirs]
        for candidate in candidates:
            resolved = self.chroot.resolve(candidate)
            host = self.chroot.host(resolved)
            if host.is_file() and read_elf(host) is not None:
                return candidate, resolved
        return None

    def closure(self, roots: Iterable[str], extra: Iterable[str] = ()) -> Closure:
        """All libraries needed by the ELF files `roots` (chroot paths) and the names `extra`."""
        result = Closure()
        queue: list[tuple[str, tuple[str, ...]]] = [(r, ()) for r in roots]
        for name in extra:
            self._add(result, queue, name, "(dlopen)", self.system_dirs)
        seen: set[str] = set()
        while queue:
            path, inherited = queue.pop(0)
            resolved = self.chroot.resolve(path)
            if resolved in seen:
                continue
            seen.add(resolved)
            info = read_elf(self.chroot.host(resolved))
            if info is None:
                raise BundleError(f"{path}: not an x86_64 ELF file in {self.chroot.root}")
            if info.interp is not None and result.loader is None:
                result.loader = info.interp
            rpath = inherited if info.runpath else (*inherited, *info.rpath)
            dirs = self.search_dirs(resolved, info, inherited)
            for name in info.needed:
                self._add(result, queue, name, path, dirs, rpath)
        return result

    def _add(
        self,
        result: Closure,
        queue: list[tuple[str, tuple[str, ...]]],
        name: str,
        user: str,
        dirs: Iterable[str],
        rpath: tuple[str, ...] = (),
    ) -> None:
        result.users.setdefault(name, []).append(user)
        if name in result.libraries:
            return
        found = self.find(name, dirs)
        if found is None:
            users = ", ".join(result.users[name])
            raise BundleError(f"{name} (needed by {users}) not found in {self.chroot.root}")
        requested, resolved = found
        result.libraries[os.path.basename(name)] = resolved
        result.requested[os.path.basename(name)] = requested
        queue.append((resolved, rpath))


def copy_file(source: Path, target: Path) -> None:
    """Copy contents, mode (without set-id bits) and times; never a symlink."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    st = source.stat()
    os.chmod(target, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_tree(
    chroot: Chroot,
    source: str,
    target: Path,
    skip_dir: frozenset[str] = frozenset(),
    skip_top: frozenset[str] = frozenset(),
    skip_file: frozenset[str] = frozenset(),
) -> list[str]:
    """Copy a chroot directory, symlinks resolved inside the chroot; returns chroot paths."""
    copied: list[str] = []
    for entry in sorted(chroot.host(chroot.resolve(source)).iterdir()):
        name = entry.name
        inner = f"{source.rstrip('/')}/{name}"
        resolved = chroot.host(chroot.resolve(inner))
        if resolved.is_dir():
            if name in skip_dir or name in skip_top:
                continue
            copied += copy_tree(chroot, inner, target / name, skip_dir, frozenset(), skip_file)
        elif resolved.is_file() and not _skipped(name, skip_file):
            copy_file(resolved, target / name)
            copied.append(inner)
    return copied


def _skipped(name: str, skip_file: frozenset[str]) -> bool:
    if name in skip_file:
        return True
    return bool(skip_file) and name.endswith(".so") and name.startswith(STDLIB_PRUNED_PREFIXES)


class Packages:
    """Which Debian package owns a chroot path, and package versions (from dpkg's database)."""

    def __init__(self, chroot: Chroot) -> None:
        self.owner: dict[str, str] = {}
        info = chroot.host("/var/lib/dpkg/info")
        for listing in sorted(info.glob("*.list")):
            package = listing.stem.split(":")[0]
            for line in listing.read_text(errors="replace").splitlines():
                self.owner.setdefault(line, package)
        self.versions = self._read_status(chroot.host("/var/lib/dpkg/status"))

    @staticmethod
    def _read_status(status: Path) -> dict[str, str]:
        versions: dict[str, str] = {}
        for paragraph in status.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in paragraph.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith((" ", "\t")):
                    fields[key] = value.strip()
            if "installed" in fields.get("Status", "").split() and "Package" in fields:
                versions[fields["Package"]] = fields.get("Version", "")
        return versions

    def find_owner(self, *paths: str) -> str | None:
        for path in paths:
            for alias in _usrmerge_aliases(path):
                if alias in self.owner:
                    return self.owner[alias]
        return None


def _usrmerge_aliases(path: str) -> Iterator[str]:
    yield path
    for merged in ("/bin", "/sbin", "/lib", "/lib64"):
        if path.startswith(merged + "/"):
            yield "/usr" + path
        elif path.startswith("/usr" + merged + "/"):
            yield path[len("/usr") :]


def build_stub(source: Path, target: Path, cc: str | None) -> None:
    """Compile the static exec stub with musl-gcc, or gcc -static."""
    compiler = cc or ("musl-gcc" if shutil.which("musl-gcc") else "gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    run([compiler, "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", str(target), str(source)])
    run(["strip", str(target)])
    read = read_elf(target)
    if read is None or read.interp is not None or read.needed:
        raise BundleError(f"{target}: the exec stub is not a static x86_64 ELF")


def run(argv: list[str]) -> None:
    log.debug("+ %s", shlex.join(argv))
    try:
        subprocess.run(argv, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise BundleError(f"{shlex.join(argv)}: {e}") from e


@dataclass
class Bundle:
    """One bundle being written into `out`."""

    chroot: Chroot
    out: Path
    owned: set[str] = field(default_factory=set)  # chroot paths copied, for .version

    @property
    def bin_dir(self) -> Path:
        return self.out / ".bundle" / "bin"

    @property
    def loader_dir(self) -> Path:
        """One symlink to the loader per command, so processes carry the command's name."""
        return self.out / ".bundle" / "loader"

    @property
    def lib_dir(self) -> Path:
        return self.out / ".bundle" / "lib"

    def add_commands(self, commands: dict[str, str]) -> list[str]:
        """Copy the real binaries and link each command name to the stub."""
        roots = []
        for name, path in commands.items():
            resolved = self.chroot.resolve(path)
            if not self.chroot.host(resolved).is_file():
                raise BundleError(f"{path} ({name}) not found in {self.chroot.root}")
            copy_file(self.chroot.host(resolved), self.bin_dir / name)
            (self.out / name).symlink_to(f".bundle/bin/{STUB}")
            self.loader_dir.mkdir(exist_ok=True)
            (self.loader_dir / name).symlink_to(f"../lib/{LOADER}")
            self.owned.update((path, resolved))
            roots.append(resolved)
        return roots

    def add_python(self) -> list[str]:
        """The standard library, pruned; returns its extension modules (chroot paths)."""
        source = f"/usr/lib/python{PYTHON_VERSION}"
        copied = copy_tree(
            self.chroot,
            source,
            self.lib_dir / f"python{PYTHON_VERSION}",
            skip_dir=STDLIB_PRUNED_ANYWHERE,
            skip_top=STDLIB_PRUNED_TOP,
            skip_file=STDLIB_PRUNED_FILES,
        )
        self.owned.update(copied)
        return [p for p in copied if p.endswith(".so")]

    def add_launcher_modules(self) -> list[str]:
        """The launcher's dependencies into OUTDIR/launcher; returns their extension modules."""
        source = "/usr/lib/python3/dist-packages"
        target = self.out / "launcher"
        target.mkdir(parents=True, exist_ok=True)
        names = [
            entry.name
            for entry in sorted(self.chroot.host(source).iterdir())
            if entry.name in LAUNCHER_MODULES or entry.name.startswith(LAUNCHER_METADATA_PREFIXES)
        ]
        missing = {m for m in LAUNCHER_MODULES if m not in names}
        if missing:
            raise BundleError(f"{', '.join(sorted(missing))} not found in {source}")
        copied: list[str] = []
        for name in names:
            inner = f"{source}/{name}"
            if self.chroot.host(self.chroot.resolve(inner)).is_dir():
                copied += copy_tree(
                    self.chroot, inner, target / name, skip_dir=frozenset({"__pycache__"})
                )
            else:
                copy_file(self.chroot.host(self.chroot.resolve(inner)), target / name)
                copied.append(inner)
        self.owned.update(copied)
        return [p for p in copied if p.endswith(".so")]

    def add_libraries(self, closure: Closure) -> None:
        for soname, resolved in sorted(closure.libraries.items()):
            copy_file(self.chroot.host(resolved), self.lib_dir / soname)
            self.owned.update((resolved, closure.requested[soname]))
        if closure.loader is None:
            raise BundleError("no binary names a dynamic loader (PT_INTERP)")
        resolved = self.chroot.resolve(closure.loader)
        copy_file(self.chroot.host(resolved), self.lib_dir / LOADER)
        self.owned.update((closure.loader, resolved))

    def write_versions(self) -> None:
        packages = Packages(self.chroot)
        names = {p for path in self.owned if (p := packages.find_owner(path)) is not None}
        lines = [f"{name} {packages.versions.get(name, '')}".rstrip() for name in sorted(names)]
        (self.out / ".version").write_text("".join(f"{line}\n" for line in lines))

    def compile_python(self) -> None:
        """Byte-compile everything once: the image is read-only at run time."""
        run(
            [
                str(self.out / "python3"), "-E", "-S", "-m", "compileall", "-q", "-j0",
                "--invalidation-mode", "unchecked-hash",
                str(self.lib_dir / f"python{PYTHON_VERSION}"),
                str(self.out / "launcher"),
            ]
        )  # fmt: skip


def make_bundle(chroot: Chroot, out: Path, cc: str | None) -> None:
    """Write the whole bundle into `out`, which must not exist."""
    out.mkdir(parents=True)
    bundle = Bundle(chroot, out)
    build_stub(Path(__file__).with_name("exec-stub.c"), bundle.bin_dir / STUB, cc)

    roots = bundle.add_commands(COMMANDS)
    roots += bundle.add_python()
    roots += bundle.add_launcher_modules()
    log.info("resolving libraries of %d ELF files", len(roots))
    closure = Resolver(chroot).closure(roots, extra=DLOPENED)
    bundle.add_libraries(closure)
    log.info("bundled %d libraries", len(closure.libraries))

    bundle.write_versions()
    bundle.compile_python()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--chroot", type=Path, required=True, help="tools chroot (tools-chroot.sh)")
    parser.add_argument("--out", type=Path, required=True, help="output directory, replaced")
    parser.add_argument("--cc", help="C compiler for the exec stub (default: musl-gcc or gcc)")
    parser.add_argument("--debug", action="store_true", help="show commands run")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="bundle: %(message)s",
    )
    if not (args.chroot / "usr/bin").is_dir():
        log.error("%s: not a tools chroot (run static-bins/tools-chroot.sh first)", args.chroot)
        return 1

    out: Path = args.out
    staging = out.with_name(out.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        make_bundle(Chroot(args.chroot), staging, args.cc)
    except BundleError as e:
        log.error("%s", e)
        return 1
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    log.info("%s done", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
