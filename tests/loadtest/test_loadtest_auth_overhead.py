"""The auth-overhead benchmark runs end to end on a few requests."""

from __future__ import annotations

import shutil
import subprocess
import sys


def test_auth_overhead_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest", "auth_overhead",
         "--sequential", "20", "--concurrent", "40", "--rounds", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")][1:]
    names = [row.split("|")[1].strip() for row in rows]
    expected = ["off", "auth", "limits, memory"]
    if shutil.which("redis-server"):
        expected.append("limits, redis")
    assert names == expected
