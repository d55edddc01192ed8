"""An executor that runs in-process unless the run config asks for processes.

Dagster's own default is the reverse. Starting a process for a step costs many times Dagster's
in-process overhead per step, and more than a per-file step's own work here (measured:
docs/benchmarks.md); the multiprocess mode pays off only when a step's work dwarfs a process
start (a slow remote embedding endpoint with many files, or many cores).

It is the `Definitions`' executor (definitions.py), not only fetch_data's: a job's own
`executor_def` does not reach the implicit asset job that the UI's Materialize,
`dagster asset materialize` and `dg launch --assets` run.
"""

import dagster as dg

in_process_unless_configured_executor = dg.ExecutorDefinition(
    name="in_process_unless_configured",
    config_schema=dg.Field(
        dg.multi_or_in_process_executor.config_schema.config_type,
        default_value={"in_process": {}},
        is_required=False,
    ),
    requirements=dg.multi_or_in_process_executor.get_requirements,
    executor_creation_fn=dg.multi_or_in_process_executor.executor_creation_fn,
    description="in_process by default; `multiprocess: {max_concurrent: N}` for processes",
)
