"""The code location: everything Dagster shows in the UI and runs from the CLI."""

import dagster as dg

from book_pipeline.defs.alerts import alert_sensors
from book_pipeline.defs.assets import book_embeddings
from book_pipeline.defs.checks import book_embeddings_retrieval_sanity
from book_pipeline.defs.deploy_jobs import deploy_jobs
from book_pipeline.defs.executors import in_process_unless_configured_executor
from book_pipeline.defs.jobs import fetch_data, query_data
from book_pipeline.defs.resources import resources_from_environment
from book_pipeline.defs.retention import run_retention_sensor
from book_pipeline.defs.sensors import dead_run_sensor, new_book_files_sensor

defs = dg.Definitions(
    assets=[book_embeddings],
    asset_checks=[book_embeddings_retrieval_sanity],
    jobs=[fetch_data, query_data, *deploy_jobs()],
    sensors=[new_book_files_sensor, dead_run_sensor, run_retention_sensor, *alert_sensors()],
    resources=resources_from_environment(),
    # Every job without its own executor, and the implicit asset job behind the UI's Materialize
    # and `dagster asset materialize` (Dagster's default there is multiprocess).
    executor=in_process_unless_configured_executor,
)
