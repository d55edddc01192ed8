"""The fetch_data ops: list files, then one transform and one embed copy per file, then one load.

Names follow the Airflow lesson's `fetch_data` DAG so its readers find their way around.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np

from book_pipeline.book_files import list_book_files, mapping_key_for
from book_pipeline.parsing import BookFileError, ParsedBookFile, parse_book_file
from book_pipeline.resources import BooksFolder, EmbedderResource, QdrantResource


@dataclass(frozen=True)
class EmbeddedBookFile:
    file: ParsedBookFile
    # float32, one row per book: a quarter of the pickle size of a list of Python floats.
    vectors: np.ndarray
    model_name: str


@dg.op(out=dg.DynamicOut(str))
def list_book_description_files(context: dg.OpExecutionContext, books_folder: BooksFolder):
    """One dynamic output per description file; with no files, nothing downstream is mapped."""
    files = list_book_files(books_folder.folder)
    context.log.info(f"{len(files)} description file(s) in {books_folder.folder}")
    for path in files:
        yield dg.DynamicOutput(str(path), mapping_key=mapping_key_for(path.name))


@dg.op
def transform_book_description_file(file_path: str) -> ParsedBookFile:
    """Parse one file into book records; a malformed file fails this copy only."""
    try:
        return parse_book_file(Path(file_path))
    except BookFileError as error:
        raise dg.Failure(
            description=str(error),
            metadata={
                "file": dg.MetadataValue.path(file_path),
                "line": error.line_number or 0,
                "problem": error.problem,
            },
            # A malformed file stays malformed: retrying cannot help, fixing the file does.
            allow_retries=False,
        ) from None


@dg.op
def create_vector_embeddings(
    context: dg.OpExecutionContext, embedder: EmbedderResource, book_file: ParsedBookFile
) -> EmbeddedBookFile:
    """Embed one file's books, in batches."""
    model = embedder.get_embedder()
    vectors = model.embed([book.embedding_text for book in book_file.books])
    context.log.info(f"{book_file.file_name}: {len(book_file.books)} book(s) embedded")
    return EmbeddedBookFile(file=book_file, vectors=vectors, model_name=model.model_name)


@dg.op
def load_embeddings_to_vector_db(
    context: dg.OpExecutionContext,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
    embedded_files: list[EmbeddedBookFile],
) -> dg.Output[dict]:
    """Upsert every file's books into Qdrant, opening the store only for the time this takes."""
    started = time.perf_counter()
    model = embedder.get_embedder()
    books_loaded = 0
    with qdrant.open(on_wait=context.log.warning) as store:
        if embedded_files:
            store.ensure_collection(embedded_files[0].vectors.shape[1], model.model_name)
        for embedded in embedded_files:
            books_loaded += store.upsert_books(
                embedded.file.books, embedded.vectors, embedded.file.sha256
            )
        collection_size = store.count()
    summary = {
        "files_processed": len(embedded_files),
        "books_loaded": books_loaded,
        "collection_size": collection_size,
        "embedding_model": model.model_name,
        "embedding_dimension": model.dimension,
    }
    context.log.info(f"loaded {books_loaded} book(s) from {len(embedded_files)} file(s)")
    stage_seconds = _stage_seconds(context)
    stage_seconds["load_embeddings_to_vector_db"] = time.perf_counter() - started
    return dg.Output(
        summary,
        metadata={
            **summary,
            "qdrant_collection": qdrant.collection,
            "qdrant_location": qdrant.location,
            "files": dg.MetadataValue.json(sorted(e.file.file_name for e in embedded_files)),
            **{
                f"seconds_{stage}": dg.MetadataValue.float(round(seconds, 3))
                for stage, seconds in stage_seconds.items()
            },
        },
    )


def _stage_seconds(context: dg.OpExecutionContext) -> dict[str, float]:
    """Time spent in each op of this run so far, summed over its mapped copies."""
    totals: dict[str, float] = defaultdict(float)
    for entry in context.instance.all_logs(
        context.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
    ):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        op_name = event.step_key.split("[")[0].rsplit(".", 1)[-1]
        totals[op_name] += event.event_specific_data.duration_ms / 1000
    return dict(totals)
