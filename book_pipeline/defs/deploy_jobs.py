"""fetch_data_celery: fetch_data with every step run by Celery workers, for more than one machine.

Celery (dagster-celery) is the distributed executor that runs dynamic outputs: each file's
transform and embed copies are tasks on the broker, picked up by whichever worker is free, and
`.collect()` waits for them all. Dask's executor does not support dynamic map/collect
(dagster-io/dagster#9785).

dagster-celery is the `deploy` extra (`pip install -e '.[deploy]'`): without it this code
location has no fetch_data_celery job and everything else works as before.

The broker and result backend come from the environment when the code location loads:
BOOK_PIPELINE_CELERY_BROKER (default redis://127.0.0.1:6379/0) and BOOK_PIPELINE_CELERY_BACKEND
(default: the broker). The workers must be started with the same (deploy/celery.yaml), share the
Dagster instance (deploy/dagster.yaml) and see the same DAGSTER_HOME storage folder, where steps
pass their outputs to each other (the fs IO manager), and the same books and data folders.
"""

from typing import Any

import dagster as dg

from book_pipeline.core.settings import VARIABLES, Variable
from book_pipeline.defs.assets import book_embeddings
from book_pipeline.defs.executors import holding_the_run_lease


def _env_reference_or(variable: Variable[Any], default: object) -> object:
    # An `env:` reference when set, so a broker password is read at run time, never stored.
    return {"env": variable.name} if variable.is_set() else default


def celery_executor_config() -> dict[str, object]:
    broker = _env_reference_or(VARIABLES.celery_broker, VARIABLES.celery_broker.default)
    return {"broker": broker, "backend": _env_reference_or(VARIABLES.celery_backend, broker)}


def deploy_jobs() -> list:
    """The jobs that need the `deploy` extra; none when it is not installed."""
    try:
        from dagster_celery import celery_executor
    except ImportError:
        return []
    return [
        dg.define_asset_job(
            "fetch_data_celery",
            selection=[book_embeddings],
            executor_def=holding_the_run_lease(celery_executor).configured(
                celery_executor_config(), name="celery_from_environment"
            ),
            description="fetch_data with every step a Celery task (needs workers on the broker "
            "BOOK_PIPELINE_CELERY_BROKER, a shared instance and storage: docs/deploy.md).",
        )
    ]
