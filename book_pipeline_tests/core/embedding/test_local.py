"""Local models on fastembed: the bundled one, a model folder, a model by name from the hub."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from book_pipeline.core.books.folders import SAMPLE_BOOKS_DIR
from book_pipeline.core.books.parsing import parse_book_file
from book_pipeline.core.embedding.base import EmbeddingModelError
from book_pipeline.core.embedding.bundled import (
    LOCAL_MODEL_DIMENSION,
    LOCAL_MODEL_NAME,
    bundled_model_files,
)
from book_pipeline.core.embedding.cache import embed_with_cache, open_embedding_cache
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.store.opening import open_store_versions
from book_pipeline.defs.resources import EmbedderResource
from book_pipeline_tests.support.embedders import sentence_transformers_folder
from book_pipeline_tests.support.model_hub_server import COMMIT, ModelHub, model_hub_server
from book_pipeline_tests.support.runs import fetch_data_job, fetch_data_run_config, steps_that_ran
from book_pipeline_tests.support.synthetic_books import write_synthetic_books

TEXTS = [
    "A haunted manor where ghosts walk the corridors at midnight.",
    "An abandoned mansion full of spirits and creaking doors.",
    "A starship crew explores a distant galaxy and meets an alien species.",
]


def test_local_model_gives_normalised_vectors_with_meaning() -> None:
    vectors = shared_local_embedder().embed(TEXTS)

    assert vectors.shape == (3, LOCAL_MODEL_DIMENSION)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ghosts, spirits, starship = vectors
    # A real sentence model puts the two haunted houses far closer than the space opera.
    assert ghosts @ spirits > 0.5
    assert ghosts @ spirits > ghosts @ starship + 0.3


def test_local_model_batching_does_not_change_vectors() -> None:
    embedder = shared_local_embedder()
    texts = [*TEXTS, "short", "x " * 400]
    together = embedder.embed(texts)
    one_by_one = np.vstack([embedder.embed([text]) for text in texts])
    np.testing.assert_allclose((together * one_by_one).sum(axis=1), 1.0, atol=1e-4)


REFERENCE = json.loads((Path(__file__).parent / "reference_vectors.json").read_text())


def test_bundled_model_gives_the_vectors_of_existing_collections() -> None:
    books = {
        (book.source_file, book.index): book
        for path in SAMPLE_BOOKS_DIR.glob("*.txt")
        for book in parse_book_file(path).books
    }
    texts = [books[entry["file"], entry["index"]].embedding_text for entry in REFERENCE["books"]]
    expected = np.asarray([entry["vector"] for entry in REFERENCE["books"]], dtype=np.float32)

    embedder = shared_local_embedder()

    assert (embedder.model_name, embedder.dimension) == (REFERENCE["model"], 384)
    np.testing.assert_allclose(embedder.embed(texts), expected, atol=1e-6)


def test_local_model_is_loaded_once_per_process() -> None:
    assert EmbedderResource().get_embedder() is EmbedderResource().get_embedder()
    assert EmbedderResource(model=LOCAL_MODEL_NAME).get_embedder() is shared_local_embedder()
    assert shared_local_embedder().model_name == LOCAL_MODEL_NAME


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sentence_transformers_folder(tmp_path_factory.mktemp("models") / "minilm-copy")


def test_a_model_folder_by_path(model_folder: Path, tmp_path: Path) -> None:
    embedder = EmbedderResource(model=str(model_folder)).get_embedder()

    assert embedder.model_name.startswith("minilm-copy@sha256:")
    assert embedder.dimension == LOCAL_MODEL_DIMENSION
    # The same weights, tokenizer and pooling as the bundled model: the same vectors.
    np.testing.assert_allclose(
        embedder.embed(TEXTS), shared_local_embedder().embed(TEXTS), atol=1e-6
    )
    # Its pooling is read from the folder: the [CLS] token's vector is another model.
    cls_folder = sentence_transformers_folder(tmp_path / "minilm-copy", pooling="cls_token")
    cls_embedder = shared_local_embedder(str(cls_folder))
    assert cls_embedder.model_name != embedder.model_name
    assert (cls_embedder.embed(TEXTS) * embedder.embed(TEXTS)).sum(axis=1).max() < 0.99


def test_a_folder_that_is_no_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(EmbeddingModelError, match=r"has no modules\.json: a model folder is read"):
        shared_local_embedder(str(tmp_path))
    with pytest.raises(EmbeddingModelError, match=r"'\./no/such/model': no such folder"):
        shared_local_embedder("./no/such/model")


def test_the_embedding_cache_never_mixes_models(model_folder: Path, tmp_path: Path) -> None:
    cache = open_embedding_cache(tmp_path / "embedding_cache")
    bundled, folder_model = shared_local_embedder(), shared_local_embedder(str(model_folder))

    first = embed_with_cache(bundled, cache, TEXTS)
    other_model = embed_with_cache(folder_model, cache, TEXTS)
    again = embed_with_cache(bundled, cache, TEXTS)

    assert (first.cache_hits, first.cache_misses) == (0, 3)
    assert (other_model.cache_hits, other_model.cache_misses) == (0, 3)
    assert (again.cache_hits, again.cache_misses) == (3, 0)


def test_a_model_from_a_folder_is_rebuilt_beside_the_bundled_models_collection(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path, model_folder: Path
) -> None:
    """A model from a folder is a change of model (issue 28): its run loads a new version
    beside the bundled model's collection, which stays whole, and switches to it once checked."""
    write_synthetic_books(books_dir, files=1, books_per_file=2)

    def run(**embedder: str) -> dg.ExecuteInProcessResult:
        return fetch_data_job().execute_in_process(
            run_config=fetch_data_run_config(books_dir, data_dir, **embedder),
            instance=instance,
            raise_on_error=False,
        )

    assert run().success
    (books_dir / "arrived_later.txt").write_text("1 ::: Later (2001) ::: An Author ::: A book.\n")
    assert run(model=str(model_folder)).success

    with open_store_versions("books", data_dir / "qdrant-edge", None, 120) as catalog:
        assert catalog.names() == ["books", "books__v2"]
        assert catalog.current_name() == "books__v2"
        rebuilt, bundled = catalog.open("books__v2"), catalog.open("books")
        assert rebuilt.count() == 3 and bundled.count() == 2
        assert rebuilt.collection_model()[1].startswith("minilm-copy@sha256:")
        assert bundled.collection_model()[1] == LOCAL_MODEL_NAME


def test_an_unknown_model_fails_the_run_at_once_without_retries(
    instance: dg.DagsterInstance, books_dir: Path, data_dir: Path
) -> None:
    write_synthetic_books(books_dir, files=1, books_per_file=2)
    started = time.perf_counter()
    result = fetch_data_job().execute_in_process(
        run_config=fetch_data_run_config(books_dir, data_dir, model="no-such-org/no-such-model"),
        instance=instance,
        raise_on_error=False,
    )

    assert not result.success
    assert time.perf_counter() - started < 30
    # The listing asks the model's name first (which version runs load into, issue 28), so an
    # unknown model fails there, once, before any file is parsed or embedded.
    [failed_step] = steps_that_ran(instance, result.run_id)["failure"]
    assert failed_step == "list_book_description_files"
    assert not instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    [failure] = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.to_string()
    assert "embedding model 'no-such-org/no-such-model': no folder of that name exists" in message
    assert "fastembed supports no model of that name" in message
    assert f"unset BOOK_PIPELINE_EMBEDDING_MODEL to use the bundled '{LOCAL_MODEL_NAME}'" in message


# Loads a local model in a fresh process, as a run's step does: huggingface_hub reads
# HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_ETAG_TIMEOUT when it is imported.
LOAD_EMBEDDER = """
import json, sys, time
from pathlib import Path
from book_pipeline.core.embedding.base import EmbeddingModelError
from book_pipeline.core.embedding.local import shared_local_embedder
from book_pipeline.core.store.opening import open_store_versions
started = time.perf_counter()
try:
    embedder = shared_local_embedder(sys.argv[1], Path(sys.argv[2]))
except EmbeddingModelError as error:
    print(json.dumps({"error": str(error), "seconds": time.perf_counter() - started}))
else:
    vectors = embedder.embed(json.loads(sys.argv[3])).tolist()
    print(json.dumps({"model": embedder.model_name, "vectors": vectors}))
"""


def load_embedder_elsewhere(model: str, cache_dir: Path, **environment: str) -> dict[str, Any]:
    variables = {**os.environ, **environment}
    variables.pop("HF_HUB_OFFLINE", None)
    finished = subprocess.run(
        [sys.executable, "-c", LOAD_EMBEDDER, model, str(cache_dir), json.dumps(TEXTS)],
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(finished.stdout.splitlines()[-1])


@pytest.fixture
def bundled_model_hub() -> Iterator[ModelHub]:
    """The hub fastembed downloads sentence-transformers/all-MiniLM-L6-v2 from, serving the
    bundled int8 files under that model's repository (Qdrant/all-MiniLM-L6-v2-onnx)."""
    weights, tokenizer = bundled_model_files()
    files = {
        "model.onnx": weights.read_bytes(),
        "tokenizer.json": tokenizer.read_bytes(),
        "tokenizer_config.json": b'{"model_max_length": 256, "pad_token": "[PAD]"}',
    }
    with model_hub_server("Qdrant/all-MiniLM-L6-v2-onnx", files) as hub:
        yield hub


def test_a_model_by_name_is_downloaded_once_into_the_cache(
    bundled_model_hub: ModelHub, tmp_path: Path
) -> None:
    hub, models = bundled_model_hub, tmp_path / "models"
    name = "sentence-transformers/all-MiniLM-L6-v2"

    downloaded = load_embedder_elsewhere(name, models, HF_ENDPOINT=hub.url)
    requests_of_the_download = list(hub.requests)
    from_the_cache = load_embedder_elsewhere(name, models, HF_ENDPOINT=hub.url)

    for loaded in (downloaded, from_the_cache):
        assert loaded["model"] == name
        np.testing.assert_allclose(
            loaded["vectors"], shared_local_embedder().embed(TEXTS), atol=1e-6
        )
    for file in ("model.onnx", "tokenizer.json", "tokenizer_config.json"):
        assert f"GET /Qdrant/all-MiniLM-L6-v2-onnx/resolve/{COMMIT}/{file}" in hub.requests
    assert hub.requests == requests_of_the_download  # later processes never asked the hub
    assert list(models.glob("models--Qdrant--all-MiniLM-L6-v2-onnx/snapshots/*/model.onnx"))


@pytest.fixture(params=["refused", "silent"])
def unreachable_hub(request: pytest.FixtureRequest) -> Iterator[str]:
    """A hub address that refuses connections, or one that accepts them and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        if request.param == "silent":
            listener.listen()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_no_network_fails_within_seconds_naming_the_ways_out(
    unreachable_hub: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    # A hub that never answers costs huggingface_hub's 3 s wait for its agent registry (skipped
    # with HF_HUB_DISABLE_TELEMETRY), then HF_HUB_ETAG_TIMEOUT (10 s by default) for the model.
    loaded = load_embedder_elsewhere(
        "BAAI/bge-small-en-v1.5", models, HF_ENDPOINT=unreachable_hub, HF_HUB_ETAG_TIMEOUT="2"
    )

    message = loaded["error"]
    assert message.startswith(
        f"embedding model 'BAAI/bge-small-en-v1.5' is not in the model cache ({models}) and "
        f"could not be downloaded from {unreachable_hub}/Qdrant/bge-small-en-v1.5-onnx-Q ("
    )
    assert f"TextEmbedding('BAAI/bge-small-en-v1.5', cache_dir='{models}')" in message
    assert f"unset BOOK_PIPELINE_EMBEDDING_MODEL to use the bundled '{LOCAL_MODEL_NAME}'" in message
    assert loaded["seconds"] < 10  # one attempt, not fastembed's own retry loop
