"""What reloading only the failed file saves, in tokens and dollars (docs/costs.md).

    python bench/embedding_cost_demo.py [--files 100] [--books-per-file 10] [--json]

Real fetch_data runs with BOOK_PIPELINE_EMBEDDER=openai against the loopback OpenAI-compatible
server of the tests, which bills each input's tokens in cl100k_base as OpenAI does:

1. `--files` synthetic files, one of them with a malformed line: the run refuses it, loads the
   others, and fails.
2. The file is fixed; `book-pipeline estimate --json` says what the next run will pay.
3. The next run loads the fixed file alone. `book-pipeline status` shows each file's tokens.
4. The same files into a new data folder with a token budget (`--budget`): the files that fit
   are loaded, the others fail their own step.

It prints the tokens and dollars of each run, against reprocessing every file without the ledger
and the embedding cache (all the books' tokens again), at text-embedding-3-small's list price.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import project_root  # noqa: F401  (first: makes book_pipeline_tests importable)

from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.costs import OPENAI_EMBEDDING_PRICES_PER_MTOK, count_tokens
from book_pipeline.definitions import defs
from book_pipeline.defs.resources import folders_run_config
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the loopback server lives with the tests
from book_pipeline_tests.support.openai_compatible_server import (  # noqa: E402
    EmbeddingsServerState,
    embeddings_server,
)

MODEL = "text-embedding-3-small"
MALFORMED_LINE = "999 ::: A Title Without Its Year ::: Someone ::: Text\n"
BOOK_PIPELINE = Path(sys.executable).parent / "book-pipeline"


def fetch_data(
    instance: dg.DagsterInstance,
    books_dir: Path,
    data_dir: Path,
    base_url: str,
    max_tokens_per_run: int | None = None,
) -> dict[str, Any]:
    """One run; its materialization's cost metadata (a failed run still loads the good files)
    and its failed steps' errors."""
    resources = folders_run_config(books_dir, data_dir)
    resources["embedder"]["config"].update(
        provider="openai",
        openai_base_url=base_url,
        openai_api_key="sk-demo",
        model=MODEL,
        max_tokens_per_run=max_tokens_per_run,
    )
    result = defs.resolve_job_def("fetch_data").execute_in_process(
        run_config={
            "resources": resources,
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        instance=instance,
        raise_on_error=False,
    )
    event = instance.get_latest_materialization_event(dg.AssetKey("book_embeddings"))
    assert event is not None and event.asset_materialization is not None
    metadata = {key: value.value for key, value in event.asset_materialization.metadata.items()}
    failures = [
        entry.get_dagster_event().step_failure_data.user_failure_data.description
        for entry in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    ]
    return {
        "run_succeeded": result.success,
        "failed_steps": len(failures),
        "first_failure": failures[0] if failures else None,
        **{
            key: metadata[key]
            for key in (
                "files_processed",
                "books_loaded",
                "failed_files_skipped",
                "embedding_tokens",
                "embedding_cost_usd",
                "embedding_texts_from_cache",
                "embedding_tokens_saved",
            )
        },
    }


def book_pipeline(command: list[str], books_dir: Path, data_dir: Path) -> str:
    environment = {
        **os.environ,
        "BOOK_PIPELINE_BOOKS_DIR": str(books_dir),
        "BOOK_PIPELINE_DATA_DIR": str(data_dir),
        "BOOK_PIPELINE_EMBEDDER": "openai",
        "BOOK_PIPELINE_EMBEDDING_MODEL": MODEL,
    }
    return subprocess.run(
        [str(BOOK_PIPELINE), *command],
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--books-per-file", type=int, default=10)
    parser.add_argument(
        "--budget",
        type=int,
        default=30_000,
        help="then load the same files into a new data folder with this token budget",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    price = OPENAI_EMBEDDING_PRICES_PER_MTOK[MODEL]
    with tempfile.TemporaryDirectory(prefix="embedding_cost_demo_") as scratch:
        root = Path(scratch)
        books_dir, data_dir = root / "books", root / "data"
        paths = write_synthetic_books(books_dir, args.files, args.books_per_file)
        # What reprocessing every file pays without the ledger and the cache: all their books.
        all_tokens = sum(
            count_tokens([book.embedding_text for book in parse_book_file(path).books])
            for path in paths
        )
        bad = paths[len(paths) // 2]
        good_bytes = bad.read_bytes()
        with bad.open("a", encoding="utf-8") as file:
            file.write(MALFORMED_LINE)
        state = EmbeddingsServerState(dimensions=64)
        with (
            embeddings_server(state) as base_url,
            dg.instance_for_test() as instance,
        ):
            first = fetch_data(instance, books_dir, data_dir, base_url)
            bad.write_bytes(good_bytes)
            estimate = json.loads(book_pipeline(["estimate", "--json"], books_dir, data_dir))
            rerun = fetch_data(instance, books_dir, data_dir, base_url)
            status = book_pipeline(["status"], books_dir, data_dir)
            billed_before = state.billed_tokens
            budgeted = fetch_data(instance, books_dir, root / "budgeted", base_url, args.budget)
            budgeted["billed_by_the_server_with_its_probes"] = state.billed_tokens - billed_before
    report = {
        "files": args.files,
        "books_per_file": args.books_per_file,
        "bad_file": bad.name,
        "first_run": first,
        "estimate_before_the_rerun": estimate,
        "rerun": rerun,
        "reprocessing_every_file": {
            "tokens": all_tokens,
            "cost_usd": all_tokens * price / 1_000_000,
        },
        "rerun_saved_tokens": all_tokens - rerun["embedding_tokens"],
        "rerun_saved_usd": (all_tokens - rerun["embedding_tokens"]) * price / 1_000_000,
        "budget": args.budget,
        "run_with_the_budget": budgeted,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(json.dumps(report, indent=2))
    lines = status.splitlines()
    fixed = [line for line in lines if line.startswith(bad.name)]
    print("\n".join(["", "book-pipeline status:", *lines[:5], "...", *fixed, "...", *lines[-4:]]))


if __name__ == "__main__":
    main()
