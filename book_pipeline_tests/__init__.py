"""Tests of book_pipeline."""

import os

from book_pipeline_tests.support.environment import scrub

# Before any test module imports book_pipeline: the code location reads its resources, and the
# ops their retry policy, when they are imported.
scrub(os.environ)
