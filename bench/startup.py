#!/usr/bin/env python3
"""Start-up and read speed of runimage, measured side by side in one run (warm cache).

Run as an ordinary user, after `make`:

    python3 bench/startup.py [--rundir build/RunDir] [--image ./runimage] [-n 21]

Start-up: `runimage true` packed and `RunDir/Run true` unpacked, against two floors: bwrap on the
rootfs directory, and a squashfuse_ll mount of the same image + bwrap + unmount, by hand.
Reads inside the container: Python imports and a tar of /usr/lib, packed against unpacked.
Each figure is the median of n runs; ratios are against the floor or baseline of the same run.
Targets: packed start-up at most 2x the packed floor, unpacked at most 40 ms, imports at most
1.5x and tar at most 3x unpacked. --before OLD_IMAGE also measures another packed file (e.g. the
previous build) in the same run, each of its runs right after the new one's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = "import json, email, http.client, xml.dom.minidom, asyncio, unittest"
TAR = "tar cf - /usr/lib 2>/dev/null | wc -c"


def medians_ms(commands: list[list[str]], runs: int, env: dict[str, str]) -> list[float]:
    """The median time of each command, the commands taking turns run by run."""
    for command in commands:
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)  # warm up
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, spent in zip(commands, times, strict=True):
            start = time.perf_counter()
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) * 1000 for spent in times]


def median_ms(command: list[str], runs: int, env: dict[str, str]) -> float:
    return medians_ms([command], runs, env)[0]


def image_offset(image: Path, env: dict[str, str]) -> str:
    return subprocess.run(
        [str(image), "--runtime-offset"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def packed_floor(image: Path, offset: str, scratch: Path) -> list[str]:
    """squashfuse_ll mount + bwrap + unmount, by hand, as one shell command."""
    squashfuse = shutil.which("squashfuse_ll") or "squashfuse_ll"
    script = (
        f'm=$(mktemp -d -p "{scratch}") && {squashfuse} -o offset={offset} "{image}" "$m" && '
        'bwrap --bind "$m/rootfs" / --proc /proc --dev /dev true; '
        'fusermount3 -u "$m"; rmdir "$m"'
    )
    return ["sh", "-c", script]


def report(title: str, rows: list[tuple[str, float]], baseline: float, target: str) -> None:
    print(f"\n{title}")
    for name, value in rows:
        print(f"  {name:<44} {value:8.1f} ms  {value / baseline:5.2f}x")
    print(f"  target: {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rundir", type=Path, default=Path("build/RunDir"))
    parser.add_argument("--image", type=Path, default=Path("runimage"))
    parser.add_argument("-n", "--runs", type=int, default=21)
    parser.add_argument("--before", type=Path, help="another packed file to compare with")
    options = parser.parse_args()
    if os.geteuid() == 0:
        print("run as an ordinary user (e.g. runuser -u runimage-test -- ...)", file=sys.stderr)
        return 2

    rundir, image = options.rundir.resolve(), options.image.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUN", "ARGV0"))}
    env["QUIET_MODE"] = "1"
    offset = image_offset(image, env)
    runs = options.runs

    with tempfile.TemporaryDirectory(prefix="runimage-bench.") as scratch:
        bwrap_floor = median_ms(
            ["bwrap", "--bind", str(rundir / "rootfs"), "/", "--proc", "/proc", "--dev", "/dev",
             "true"], runs, env)  # fmt: skip
        fuse_floor = median_ms(packed_floor(image, offset, Path(scratch)), runs, env)
        unpacked = median_ms([str(rundir / "Run"), "true"], runs, env)
        before = options.before.resolve() if options.before else None
        packed, *packed_before = medians_ms(
            [[str(image), "true"], *([[str(before), "true"]] if before else [])], runs, env
        )

    report(
        "start-up (true)",
        [("bwrap on the rootfs directory (floor)", bwrap_floor),
         ("unpacked: RunDir/Run true", unpacked),
         ("squashfuse_ll mount + bwrap + unmount (floor)", fuse_floor),
         ("packed: runimage true", packed),
         *[("packed before: --before true", value) for value in packed_before]],
        fuse_floor,
        f"packed <= 2x packed floor ({packed / fuse_floor:.2f}x); unpacked <= 40 ms "
        f"({unpacked:.1f} ms)",
    )  # fmt: skip

    reads = []
    for name, workload in (("python imports", ["python3", "-c", IMPORTS]),
                           ("tar of /usr/lib", ["sh", "-c", TAR])):  # fmt: skip
        images = [rundir / "Run", image, *([before] if before else [])]
        unpacked_ms, packed_ms, *before_ms = medians_ms(
            [[str(path), *workload] for path in images], max(5, runs // 3), env
        )
        reads.append((name, unpacked_ms, packed_ms, before_ms))
    for name, unpacked_ms, packed_ms, before_ms in reads:
        limit = "1.5x" if name == "python imports" else "3x"
        report(
            f"reads: {name}",
            [
                ("unpacked", unpacked_ms),
                ("packed", packed_ms),
                *[("packed before", value) for value in before_ms],
            ],
            unpacked_ms,
            f"packed <= {limit} unpacked ({packed_ms / unpacked_ms:.2f}x)",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
