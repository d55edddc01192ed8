"""The lesson's code location: apart from the pipeline's, and run the way docs/airflow_lesson.md
runs it."""

from pathlib import Path

import yaml

from book_pipeline.definitions import defs as pipeline_defs
from book_pipeline.lesson.definitions import defs as lesson_defs
from book_pipeline_tests.support.runs import run_project_command

ROOT = Path(__file__).resolve().parents[2]


def test_the_workspace_lists_the_pipeline_and_the_lesson_apart() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    assert modules == ["book_pipeline.definitions", "book_pipeline.lesson.definitions"]
    assert [job.name for job in lesson_defs.resolve_all_job_defs()] == ["simple_mapping"]
    assert "simple_mapping" not in {job.name for job in pipeline_defs.resolve_all_job_defs()}


def test_the_documented_command_runs_the_job(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "ops:\n  get_numbers:\n    config:\n      seed: 7\n"
        "  mapped_task_one:\n    config:\n      my_constant_arg: 10\n"
    )
    completed = run_project_command(
        f"dagster job execute -m book_pipeline.lesson.definitions -j simple_mapping -c {config}",
        tmp_path / "dagster_home",
        ROOT,
        {},
    )
    assert completed.returncode == 0, completed.stdout
    assert "10 + 20 = 30" in completed.stdout and "10 + 51 = 61" in completed.stdout
    assert "RUN_SUCCESS" in completed.stdout
