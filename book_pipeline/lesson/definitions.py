"""The lesson's code location: the `simple_mapping` job alone (docs/airflow_lesson.md)."""

import dagster as dg

from book_pipeline.defs.executors import in_process_unless_configured_executor
from book_pipeline.lesson.simple_mapping import simple_mapping

defs = dg.Definitions(jobs=[simple_mapping], executor=in_process_unless_configured_executor)
