"""The sensor's batches run one at a time, on every instance the docs and the quickstart use:
two batches never embed at once, each with every core (docs/operations.md, "A backfill")."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.run_coordinator import QueuedRunCoordinator

from book_pipeline.defs.sensors import BATCH_TAG

ROOT = Path(__file__).resolve().parents[1]
ONE_BATCH_AT_A_TIME = {"key": BATCH_TAG, "limit": 1}


def assert_one_batch_at_a_time(instance: dg.DagsterInstance) -> None:
    coordinator = instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = coordinator.get_run_queue_config()
    assert ONE_BATCH_AT_A_TIME in queue.tag_concurrency_limits
    assert queue.max_concurrent_runs > 1  # other runs (a search, a Materialize) are not held


def test_the_local_instance_runs_one_batch_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((ROOT / "deploy" / "local" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert_one_batch_at_a_time(instance)


def test_the_quickstarts_temporary_instance_reads_the_same_settings(tmp_path: Path) -> None:
    """`dagster dev` and `dagster job execute` without DAGSTER_HOME read ./dagster.yaml."""
    assert (ROOT / "dagster.yaml").resolve() == ROOT / "deploy" / "local" / "dagster.yaml"
    with dg.DagsterInstance.from_ref(
        InstanceRef.from_dir(str(tmp_path), config_dir=str(ROOT))
    ) as inst:
        assert_one_batch_at_a_time(inst)


@pytest.mark.parametrize("config", ["deploy/local/dagster.yaml", "deploy/dagster.yaml"])
def test_skipped_sensor_ticks_are_purged_after_a_day(config: str) -> None:
    retention = yaml.safe_load((ROOT / config).read_text())["retention"]
    assert retention["sensor"]["purge_after_days"]["skipped"] == 1
