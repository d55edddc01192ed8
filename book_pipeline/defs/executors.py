"""An executor that runs in-process unless the run config asks for processes.

Dagster's own default is the reverse. Measured on 2 cores: ~0.09 s per step in-process against
~1.6 s per step with one process per step, while the per-file steps here take well under a
second; the multiprocess mode pays off only when a step's work dwarfs a process start (a slow
remote embedding endpoint with many files, or many cores).

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
