"""Jobs: fetch_data materializes book_embeddings, as the lesson's DAG of the same name;
query_data searches it."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from book_pipeline.core.settings import Settings
from book_pipeline.defs.assets import book_embeddings
from book_pipeline.defs.query_ops import search_loaded_books


def console_log_run_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The console logger at `BOOK_PIPELINE_LOG_LEVEL` (default INFO), as a job's default config.

    A run whose config does not name a logger gets Dagster's console logger at DEBUG (or the
    instance's `python_log_level`): ~150 lines for the 45 sample books, three per step.
    """
    level = Settings.from_environment(environ).log_level
    return {"loggers": {"console": {"config": {"log_level": level}}}}


# The executor is the Definitions' (book_pipeline/defs/executors.py): in-process unless configured.
fetch_data = dg.define_asset_job(
    "fetch_data",
    selection=[book_embeddings],
    config=console_log_run_config(),
    description="Parse, embed and load every description file into Qdrant, one copy per file.",
)


@dg.job(
    executor_def=dg.in_process_executor,
    description="Find the loaded books closest to a sentence (config: query, limit, author, "
    "year_from, year_to); the results are a table on the run.",
)
def query_data():
    search_loaded_books()
