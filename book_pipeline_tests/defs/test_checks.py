"""The retrieval sanity check: green on the sample books, red on what only a search reveals."""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import BookRecord, parse_book_file
from book_pipeline.core.embedding.bundled import LOCAL_MODEL_DIMENSION, LOCAL_MODEL_NAME
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.settings import DEFAULT_COLLECTION
from book_pipeline.core.store.opening import open_vector_store
from book_pipeline.defs.checks import (
    SAMPLE_PROBES,
    SELF_PROBE_COUNT,
    RetrievalReport,
    evaluate_retrieval,
)
from book_pipeline_tests.support.embedders import CountingEmbedder, unit_vectors
from book_pipeline_tests.support.runs import SampleLoad
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

VectorMaker = Callable[[Sequence[BookRecord]], np.ndarray]


def real_vectors(books: Sequence[BookRecord]) -> np.ndarray:
    return shared_local_embedder().embed([book.embedding_text for book in books])


def random_vectors(books: Sequence[BookRecord]) -> np.ndarray:
    return unit_vectors(len(books), LOCAL_MODEL_DIMENSION)


def load(
    data_dir: Path,
    paths: Sequence[Path],
    make_vectors: VectorMaker,
    model_name: str = LOCAL_MODEL_NAME,
) -> None:
    """The load step's writes without Dagster, with vectors of the test's choosing."""
    with open_vector_store(DEFAULT_COLLECTION, data_dir / "qdrant-edge") as store:
        store.ensure_collection(LOCAL_MODEL_DIMENSION, model_name)
        for path in paths:
            parsed = parse_book_file(path)
            store.upsert_books(parsed.books, make_vectors(parsed.books), parsed.sha256)


def evaluate(data_dir: Path, recorded_books: int = 0) -> RetrievalReport:
    with open_vector_store(DEFAULT_COLLECTION, data_dir / "qdrant-edge") as store:
        return evaluate_retrieval(store, shared_local_embedder(), recorded_books=recorded_books)


def test_fetch_data_runs_the_check_and_it_passes_on_the_sample_books(
    sample_load: SampleLoad,
) -> None:
    evaluations = {e.check_name: e for e in sample_load.result.get_asset_check_evaluations()}
    # The other check of the run: no sample file was refused.
    assert evaluations.keys() == {
        "retrieval_sanity",
        "every_file_accepted",
        "every_removal_confirmed",
        "model_switch",
    }
    assert evaluations["every_file_accepted"].passed
    evaluation = evaluations["retrieval_sanity"]

    assert evaluation.passed, evaluation.description
    probes = 3 * len(SAMPLE_PROBES)  # in each of the three modes
    assert evaluation.description.startswith(f"{probes} of {probes} sample probe(s) found their")
    assert evaluation.description.endswith("(modes: hybrid, dense, keyword)")
    assert evaluation.metadata["probe_kind"].value == "sample"
    for mode in ("hybrid", "dense", "keyword"):
        assert (
            f"| {mode} | Dracula (gothic_horror.txt) | 1 |" in evaluation.metadata["probes"].value
        )


def test_missing_collection_fails(tmp_path: Path) -> None:
    report = evaluate(tmp_path)

    assert not report.passed
    assert report.description == (
        f"collection {DEFAULT_COLLECTION!r} at {tmp_path / 'qdrant-edge' / 'books'} is empty or "
        "missing"
    )


def test_empty_collection_fails(tmp_path: Path) -> None:
    load(tmp_path, [], real_vectors)

    report = evaluate(tmp_path)

    assert not report.passed
    assert "is empty or missing" in report.description


def test_an_empty_collection_the_ledger_records_books_in_fails_saying_so(tmp_path: Path) -> None:
    load(tmp_path, [], real_vectors)

    report = evaluate(tmp_path, recorded_books=45)

    assert not report.passed
    assert report.description.endswith(
        "is empty or missing, while the ledger records 45 book(s) as loaded into it: the next "
        "run loads them again"
    )


def test_vectors_that_do_not_match_the_books_fail(tmp_path: Path) -> None:
    load(tmp_path, sorted(SAMPLE_BOOKS_DIR.glob("*.txt")), random_vectors)

    report = evaluate(tmp_path)

    assert not report.passed
    assert report.probe_kind == "sample"
    assert len(report.outcomes) == 3 * len(SAMPLE_PROBES)
    # The keyword side finds the books by their words; only the dense searches miss.
    assert "missed: " in report.description and "(dense)" in report.description
    assert "(keyword)" not in report.description


def test_collection_of_another_model_fails(tmp_path: Path) -> None:
    load(tmp_path, [SAMPLE_BOOKS_DIR / "romance.txt"], random_vectors, model_name="other-model")

    report = evaluate(tmp_path)

    assert not report.passed
    assert "was built with 'other-model'" in report.description


def test_only_probes_of_loaded_sample_books_run(tmp_path: Path) -> None:
    load(tmp_path, [SAMPLE_BOOKS_DIR / "romance.txt"], real_vectors)

    report = evaluate(tmp_path)

    assert report.passed, report.description
    assert {outcome.probe.title for outcome in report.outcomes} == {"Across the Winter Sea"}
    assert [outcome.mode for outcome in report.outcomes] == ["hybrid", "dense", "keyword"]


def test_other_books_are_probed_with_their_own_text(tmp_path: Path) -> None:
    load(tmp_path, write_synthetic_books(tmp_path / "books", 2, 10), real_vectors)

    report = evaluate(tmp_path)

    assert report.passed, report.description
    assert report.probe_kind == "self"
    assert len(report.outcomes) == 3 * SELF_PROBE_COUNT
    assert all(outcome.rank == 1 for outcome in report.outcomes)


def test_other_books_with_vectors_that_do_not_match_fail(tmp_path: Path) -> None:
    load(tmp_path, write_synthetic_books(tmp_path / "books", 2, 10), random_vectors)

    report = evaluate(tmp_path)

    assert not report.passed
    assert report.probe_kind == "self"


@pytest.mark.parametrize("mode", [None, "hybrid", "dense", "keyword"])
def test_the_sample_probes_in_each_mode(sample_load: SampleLoad, mode: str | None) -> None:
    with open_vector_store(DEFAULT_COLLECTION, sample_load.data_dir / "qdrant-edge") as store:
        report = evaluate_retrieval(store, shared_local_embedder(), mode)

    assert report.passed, report.description


def test_each_probe_query_is_embedded_once_for_all_modes(sample_load: SampleLoad) -> None:
    embedder = CountingEmbedder()
    with open_vector_store(DEFAULT_COLLECTION, sample_load.data_dir / "qdrant-edge") as store:
        report = evaluate_retrieval(store, embedder)

    assert report.passed and len(report.outcomes) == 3 * len(SAMPLE_PROBES)
    embedded = [text for call in embedder.calls for text in call]
    assert sorted(embedded) == sorted(probe.query for probe in SAMPLE_PROBES)
