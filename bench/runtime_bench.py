#!/usr/bin/env python3
"""Start-up and read speed of the runtime's FUSE mount, side by side.

Packs a RunDir holding a copy of host directories behind a runtime, then
times, per iteration (median and minimum of N; the minimum is the steadier
figure on a busy machine):

  unpacked      the workload on the RunDir on disk
  squashfuse_ll a fresh `squashfuse_ll -o offset=` mount, workload, unmount
  runtime       `./image WORKLOAD`: the runtime mounts, runs Run, unmounts

Workloads: `true` (start-up), `py` (Python imports from the tree's stdlib),
`tar` (tar of the whole tree to a pipe); `py2` and `tar2` run the workload
twice on one mount, so their difference from one run is the warm cost. Every
iteration starts from a new mount, as every start of a runimage does; the
image file itself stays in the host's page cache.

    bench/runtime_bench.py --runtime build/runtime --work /home/user/bench -n 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

PYTHON = "/usr/bin/python3.11"
IMPORTS = (
    "import asyncio, email.mime.multipart, http.server, xml.etree.ElementTree, json, "
    "decimal, unittest, argparse, logging.handlers, sqlite3, ssl, csv, zipfile, tarfile, "
    "pydoc, difflib, typing, dataclasses, concurrent.futures, multiprocessing"
)
RUN_SCRIPT = f"""#!/bin/sh
case "$1" in
true) exit 0 ;;
py) PYTHONHOME="$RUNDIR/usr" exec {PYTHON} -s -B -c '{IMPORTS}' ;;
tar) tar cf - -C "$RUNDIR" usr | wc -c >/dev/null ;;
py2 | tar2) w=${{1%2}}; "$0" "$w" && "$0" "$w" ;;
esac
"""


def build(work: Path, runtime: Path, sources: list[str], comp: list[str]) -> tuple[Path, Path]:
    rundir = work / "RunDir"
    image = work / "bench.img"
    if not rundir.exists():
        for src in sources:
            dest = rundir / src.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", src, str(dest)], check=True)
    (rundir / "Run").write_text(RUN_SCRIPT)
    (rundir / "Run").chmod(0o755)
    offset = runtime.stat().st_size
    subprocess.run(
        [
            "mksquashfs",
            str(rundir),
            str(image),
            "-root-owned",
            "-noappend",
            "-quiet",
            "-no-progress",
            "-offset",
            str(offset),
            *comp,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with open(runtime, "rb") as head, open(image, "r+b") as packed:
        shutil.copyfileobj(head, packed)
    image.chmod(0o755)
    return rundir, image


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_unpacked(rundir: Path, workload: str) -> float:
    env = dict(os.environ, RUNDIR=str(rundir))
    return timed([str(rundir / "Run"), workload], env)


def run_squashfuse(image: Path, offset: int, workload: str) -> float:
    mnt = Path(tempfile.mkdtemp(prefix="sqfs-bench."))
    try:
        start = time.perf_counter()
        subprocess.run(
            ["squashfuse_ll", "-o", f"offset={offset}", str(image), str(mnt)], check=True
        )
        env = dict(os.environ, RUNDIR=str(mnt))
        subprocess.run([str(mnt / "Run"), workload], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        return time.perf_counter() - start
    finally:
        mnt.rmdir()


def run_runtime(image: Path, workload: str, env: dict[str, str]) -> float:
    return timed([str(image), workload], dict(os.environ, **env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("-n", type=int, default=7)
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        help="host directory to copy into the RunDir (repeatable)",
    )
    parser.add_argument("--comp", default="-comp lz4 -Xhc -b 256K")
    parser.add_argument("--workloads", default="true,py,tar")
    parser.add_argument(
        "--variants", default="", help="extra runtime variants as NAME:VAR=VAL,VAR=VAL;..."
    )
    args = parser.parse_args()

    sources = args.source or ["/usr/lib/python3.11", "/usr/lib/python3", "/usr/lib/gcc"]
    args.work.mkdir(parents=True, exist_ok=True)
    rundir, image = build(args.work, args.runtime.resolve(), sources, args.comp.split())
    offset = args.runtime.stat().st_size
    variants: dict[str, dict[str, str]] = {"runtime": {}}
    for spec in filter(None, args.variants.split(";")):
        name, _, assigns = spec.partition(":")
        variants[name] = dict(a.split("=", 1) for a in assigns.split(",") if a)

    print(f"image {image.stat().st_size / 2**20:.0f} MiB ({args.comp}), median of {args.n}")
    for workload in args.workloads.split(","):
        rows: dict[str, list[float]] = {"unpacked": [], "squashfuse_ll": []}
        rows.update({name: [] for name in variants})
        run_unpacked(rundir, workload)  # warm the host's page cache
        for _ in range(args.n):
            rows["unpacked"].append(run_unpacked(rundir, workload))
            rows["squashfuse_ll"].append(run_squashfuse(image, offset, workload))
            for name, env in variants.items():
                rows[name].append(run_runtime(image, workload, env))
        base = statistics.median(rows["unpacked"])
        base_min = min(rows["unpacked"])
        for name, times in rows.items():
            med, low = statistics.median(times), min(times)
            print(
                f"  {workload:5} {name:16} median {med * 1000:8.1f} ms {med / base:5.2f}x"
                f"   min {low * 1000:8.1f} ms {low / base_min:5.2f}x"
            )


if __name__ == "__main__":
    main()
