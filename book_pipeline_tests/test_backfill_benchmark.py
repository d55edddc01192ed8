"""bench/backfill_benchmark.py on a tiny drop: a real daemon loads it, and the JSON has exactly
the fields the issue names (the figures themselves are quoted in docs/benchmarks.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_DROP = ["--files", "3", "--books-per-file", "2"]
FIELDS = [
    "books",
    "seconds_to_first",
    "seconds_to_all",
    "books_per_s",
    "embedder_books_per_s",
    "ratio",
    "dagster_home_mb",
]


def test_the_benchmark_prints_one_json_object(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "backfill_benchmark.py"), *TINY_DROP, "--json"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    result = json.loads(finished.stdout)

    assert list(result) == FIELDS
    assert result["books"] == 6
    assert 0 < result["seconds_to_first"] <= result["seconds_to_all"]
    assert all(isinstance(result[field], float) and result[field] > 0 for field in FIELDS[1:])
    # The retention sensor has removed the runs' step outputs: the instance's databases remain.
    assert result["dagster_home_mb"] < 5
