"""Jobs: fetch_data materializes book_embeddings, as the lesson's DAG of the same name;
query_data searches it."""

import dagster as dg

from book_pipeline.assets import book_embeddings
from book_pipeline.executors import in_process_unless_configured_executor
from book_pipeline.query_ops import search_loaded_books

fetch_data = dg.define_asset_job(
    "fetch_data",
    selection=[book_embeddings],
    executor_def=in_process_unless_configured_executor,
    description="Parse, embed and load every description file into Qdrant, one copy per file.",
)


@dg.job(
    executor_def=dg.in_process_executor,
    description="Find the loaded books closest to a sentence (config: query, limit, author, "
    "year_from, year_to); the results are a table on the run.",
)
def query_data():
    search_loaded_books()
