"""The executors: in-process unless the run config asks for processes, and each holding the run's
lease in the process that orchestrates the run.

Dagster's own default is the reverse. Starting a process for a step costs many times Dagster's
in-process overhead per step, and more than a per-file step's own work here (measured:
docs/benchmarks.md); the multiprocess mode pays off only when a step's work dwarfs a process
start (a slow remote embedding endpoint with many files, or many cores).

It is the `Definitions`' executor (definitions.py), not only fetch_data's: a job's own
`executor_def` does not reach the implicit asset job that the UI's Materialize,
`dagster asset materialize` and `dg launch --assets` run.

The run's lease (core/runtime/run_leases.py) is taken where every run, however started and on
whatever executor, passes: the executor's `execute`, which runs in the process that orchestrates
the run (the run's only process in-process; the one that starts the step processes, or sends
the steps to Celery and waits for them) from before its first step to after its last. A
run-status sensor would see the run only after it started, and only under a daemon; a resource
is set up only where a step runs, so a Celery run whose steps wait in the broker's queue had no
lease at all and was judged dead once the grace period passed. Step processes still take their
own lease (PipelineStateResource): one killed while the orchestrator waits is seen too.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from book_pipeline.core.runtime.run_leases import RunLease
from book_pipeline.defs.resources import PIPELINE_STATE_KEY, PipelineStateResource

# For type checking only: Dagster's public `Executor` interface names the types of its arguments
# and properties only in private modules (checked against Dagster 1.13.27);
# defs/test_dead_runs.py fails, naming them, if Dagster moves them.
if TYPE_CHECKING:
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan
    from dagster._core.execution.retries import RetryMode
    from dagster._core.execution.step_dependency_config import StepDependencyConfig


def run_lease_for(plan_context: "PlanOrchestrationContext") -> RunLease:
    """The run's lease in the state folder its pipeline_state resource names: the run's config
    over the resource's own, as the resource itself will be configured in the step processes."""
    job = plan_context.job.get_definition()
    resolved = dg.validate_run_config(job, plan_context.run_config)
    state = PipelineStateResource(**resolved["resources"][PIPELINE_STATE_KEY]["config"])
    return RunLease(state.folder, plan_context.run_id, state.dead_run_grace_seconds)


class RunLeasingExecutor(dg.Executor):
    """An executor that holds the run's lease while the one it wraps orchestrates the run."""

    def __init__(self, wrapped: dg.Executor) -> None:
        self._wrapped = wrapped

    def __getattr__(self, name: str) -> object:
        # An execution loop reads its own executor's settings from the run's context, where it
        # finds this one (dagster-celery's calls `app_args()`): they are the wrapped one's.
        if name == "_wrapped":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    @property
    def retries(self) -> "RetryMode":
        return self._wrapped.retries

    @property
    def step_dependency_config(self) -> "StepDependencyConfig":
        return self._wrapped.step_dependency_config

    def execute(
        self, plan_context: "PlanOrchestrationContext", execution_plan: "ExecutionPlan"
    ) -> Iterator[dg.DagsterEvent]:
        lease = run_lease_for(plan_context)
        lease.start()
        try:
            yield from self._wrapped.execute(plan_context, execution_plan)
        finally:
            lease.end()


def holding_the_run_lease(
    executor_def: dg.ExecutorDefinition, name: str | None = None
) -> dg.ExecutorDefinition:
    """`executor_def`, its executors wrapped in `RunLeasingExecutor`."""
    create = executor_def.executor_creation_fn
    assert create is not None, f"{executor_def.name} creates no executor"
    return dg.ExecutorDefinition(
        name=name or executor_def.name,
        config_schema=executor_def.config_schema,
        requirements=executor_def.get_requirements,
        executor_creation_fn=lambda init_context: RunLeasingExecutor(create(init_context)),
        description=executor_def.description,
    )


in_process_unless_configured_executor = holding_the_run_lease(
    dg.ExecutorDefinition(
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
)
