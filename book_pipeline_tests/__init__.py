"""Tests of book_pipeline."""

import os

# Step retries wait about 2, 6 and 14 s by default; the tests' runs retry within a fraction of a
# second. Set here, before any test module imports book_pipeline: the retry policy is read once,
# when the ops are defined (book_pipeline/defs/retries.py).
os.environ.setdefault("BOOK_PIPELINE_RETRY_DELAY_SECONDS", "0.05")
