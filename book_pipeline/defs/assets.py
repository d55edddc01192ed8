"""The book_embeddings asset: the Qdrant collection, built by the per-file fetch_data graph."""

import dagster as dg

from book_pipeline.core.settings import VARIABLES
from book_pipeline.defs.model_switch import MODEL_SWITCH, switch_to_rebuilt_version
from book_pipeline.defs.ops import (
    create_vector_embeddings,
    list_book_description_files,
    load_embeddings_to_vector_db,
    transform_book_description_file,
)
from book_pipeline.defs.refusal_ops import (
    list_over_budget_book_files,
    list_refused_book_files,
    refuse_book_description_file,
    refuse_over_budget_book_file,
)
from book_pipeline.defs.step_checks import (
    EVERY_FILE_ACCEPTED_CHECK,
    EVERY_REMOVAL_CONFIRMED_CHECK,
    check_every_file_accepted,
    check_removals_confirmed,
)

BOOKS_GROUP = "books"


def book_embeddings_kinds(embedder_provider: str) -> set[str]:
    """What the UI shows the asset runs on: Qdrant, and the embedder configured at load time
    (the local model is an ONNX model whichever runtime runs it)."""
    return {"qdrant", "openai" if embedder_provider == "openai" else "onnx"}


EVERY_FILE_ACCEPTED = dg.AssetCheckSpec(
    EVERY_FILE_ACCEPTED_CHECK,
    asset="book_embeddings",
    description="No file of the run was refused, nor held back by the token budget. After a "
    "refusal (each refused file fails its own refuse_book_description_file step, each held-back "
    "file its refuse_over_budget_book_file step) it does not run: the UI shows it failed to "
    "execute",
)

EVERY_REMOVAL_CONFIRMED = dg.AssetCheckSpec(
    EVERY_REMOVAL_CONFIRMED_CHECK,
    asset="book_embeddings",
    description="Every file that left the books folder had its books removed: fails when more "
    "files left than a run may remove (BOOK_PIPELINE_MAX_REMOVED_FILES_PER_RUN), or the folder "
    "was empty; then no book was removed, and the step says which files and how to confirm",
)


@dg.graph_asset(
    group_name=BOOKS_GROUP,
    kinds=book_embeddings_kinds(VARIABLES.embedder.read()),
    check_specs=[EVERY_FILE_ACCEPTED, EVERY_REMOVAL_CONFIRMED, MODEL_SWITCH],
)
def book_embeddings():
    """Every book of the description files, embedded and searchable in Qdrant.

    One transform and one embed copy per file (`.map()`), collected into a single load. A
    refused file goes the other way, to its own failing step, so the load does not wait for it
    (Airflow's `trigger_rule="all_done"`): the good files load and the run still fails. So does
    a file that the run's token budget held back (`BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN`).
    """
    books, refusals = list_book_description_files().map(transform_book_description_file)
    refused = list_refused_book_files(refusals.collect()).map(refuse_book_description_file)
    embedded, over_budget = books.map(create_vector_embeddings)
    held_back = list_over_budget_book_files(over_budget.collect()).map(refuse_over_budget_book_file)
    summary, removal_hold = load_embeddings_to_vector_db(embedded.collect())
    return {
        "result": summary,
        "book_embeddings_every_removal_confirmed": check_removals_confirmed(removal_hold),
        "book_embeddings_model_switch": switch_to_rebuilt_version(loaded=summary),
        "book_embeddings_every_file_accepted": check_every_file_accepted(
            refused=refused.collect(), over_budget=held_back.collect()
        ),
    }
