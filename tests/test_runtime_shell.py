"""The runtime's own shell test (TAP), on the runtime built into the RunDir."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent / "runtime" / "test_runtime.sh"


def test_runtime_tap_suite(rundir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), str(rundir / "static" / "runtime"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    failed = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0 and not failed, result.stdout[-4000:] + result.stderr[-2000:]
    plans = [line for line in result.stdout.splitlines() if line.startswith("1..")]
    passed = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert plans and int(plans[-1][3:]) == len(passed) > 0
