"""Jobs: fetch_data materializes book_embeddings, as the lesson's DAG of the same name."""

import dagster as dg

from book_pipeline.assets import book_embeddings
from book_pipeline.executors import in_process_unless_configured_executor

fetch_data = dg.define_asset_job(
    "fetch_data",
    selection=[book_embeddings],
    executor_def=in_process_unless_configured_executor,
    description="Parse, embed and load every description file into Qdrant, one copy per file.",
)
