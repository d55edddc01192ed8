"""Put the project's root on the import path: the benchmarks share the tests' support package
(`book_pipeline_tests.support`: synthetic books, loopback servers), which is not installed.

Imported first by a benchmark run as `python bench/NAME.py`, where only bench/ is on the path.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
