"""Retrieval sanity of book_embeddings: queries written for known books must find them.

A wrong model, vectors that were not normalised, a broken pooling or an empty collection all still
"load" without an error; only searching shows them, so the check searches.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import numpy as np

from book_pipeline.core.embedding.base import Embedder, WrappedEmbedder
from book_pipeline.core.embedding.cache import CachedEmbedder
from book_pipeline.core.embedding.costs import TokenBudgetExceeded, count_tokens
from book_pipeline.core.ingest.rebuild import current_version
from book_pipeline.core.search import (
    SearchHit,
    SearchRefusedError,
    check_collection_model,
    markdown_table,
    search_books,
)
from book_pipeline.core.store.base import BookVectorStore, book_from_payload, book_point_id
from book_pipeline.defs.resources import EmbedderResource, PipelineStateResource, QdrantResource

PROBE_TOP_K = 3
SELF_PROBE_COUNT = 5


@dataclass(frozen=True)
class RetrievalProbe:
    query: str
    title: str
    source_file: str
    book_index: int


# One book per sample file, in words that are not the description's own; each ranks first with
# a clear margin under the local model, so a failure means something broke, not bad luck.
SAMPLE_PROBES = (
    RetrievalProbe(
        "a detective solves a murder on a snowbound train",
        "Murder on the Midnight Express",
        "classic_mysteries.txt",
        100,
    ),
    RetrievalProbe(
        "goblins in the mines want to kidnap a little princess",
        "The Princess and the Goblin",
        "fantasy_epics.txt",
        205,
    ),
    RetrievalProbe("a vampire count travels to England", "Dracula", "gothic_horror.txt", 501),
    RetrievalProbe(
        "the fall of ancient Rome",
        "The History of the Decline and Fall of the Roman Empire",
        "history_and_ideas.txt",
        600,
    ),
    RetrievalProbe(
        "lovers separated by war write letters to each other",
        "Across the Winter Sea",
        "romance.txt",
        400,
    ),
    RetrievalProbe("Martians invade England", "The War of the Worlds", "science_fiction.txt", 302),
)


@dataclass(frozen=True)
class ProbeOutcome:
    probe: RetrievalProbe
    mode: str
    hits: list[SearchHit]

    @property
    def rank(self) -> int | None:
        """Where the expected book came, or None when it is not in the top hits."""
        for hit in self.hits:
            if (hit.title, hit.source_file) == (self.probe.title, self.probe.source_file):
                return hit.rank
        return None


@dataclass(frozen=True)
class RetrievalReport:
    passed: bool
    description: str
    # "sample" (hand-written queries), "self" (books' own texts), or "none" when nothing ran.
    probe_kind: str
    outcomes: list[ProbeOutcome]

    def markdown(self) -> str:
        rows = [
            [
                outcome.probe.query,
                outcome.mode,
                f"{outcome.probe.title} ({outcome.probe.source_file})",
                str(outcome.rank) if outcome.rank else f"not in top {PROBE_TOP_K}",
                outcome.hits[0].title if outcome.hits else "",
                f"{outcome.hits[0].score:.3f}" if outcome.hits else "",
            ]
            for outcome in self.outcomes
        ]
        header = ["query", "mode", "expected book", "rank", "top hit", "top score"]
        return markdown_table(header, rows)


def evaluate_retrieval(
    store: BookVectorStore,
    embedder: Embedder,
    mode: str | None = None,
    recorded_books: int = 0,
) -> RetrievalReport:
    """Run the probes that fit the loaded books; pass when every expected book is in the top 3.

    The sample probes only mean something when their books are loaded, so the ones whose book is
    missing are skipped. When none is loaded (another books folder), each of a few loaded books
    is searched with its own embedded text instead: it must come back near the top. That proves
    less about meaning, but still catches the failures this check exists for: a model other than
    the one that made the vectors, unnormalised or garbage vectors. An empty or missing
    collection fails: a search there can only come back empty. `recorded_books`, the books
    the ledger records as loaded into it, is named in that failure: the store lost them.

    Each probe runs in `mode`, or (None) in every mode the collection answers: hybrid alone
    would let the keyword side hide broken dense vectors, and the other way round.
    """
    book_count = store.count()
    if book_count == 0:
        description = f"collection {store.collection!r} at {store.location} is empty or missing"
        if recorded_books:
            description += (
                f", while the ledger records {recorded_books} book(s) as loaded into it: the "
                "next run loads them again"
            )
        return RetrievalReport(False, description, "none", [])
    try:
        check_collection_model(store, embedder)
    except SearchRefusedError as error:
        return RetrievalReport(False, str(error), "none", [])
    probes = _loaded_probes(store, SAMPLE_PROBES)
    probe_kind = "sample"
    if not probes:
        probes, probe_kind = _self_probes(store), "self"
    modes = store.search_modes() if mode is None else (mode,)
    # Hybrid and dense embed the same probe query: once is enough (a remote model is paid).
    embed_once = EmbedOnce(embedder)
    outcomes = [
        ProbeOutcome(
            probe, each, search_books(store, embed_once, probe.query, PROBE_TOP_K, mode=each)
        )
        for each in modes
        for probe in probes
    ]
    missed = [outcome for outcome in outcomes if outcome.rank is None]
    found = len(outcomes) - len(missed)
    description = (
        f"{found} of {len(outcomes)} {probe_kind} probe(s) found their book in the top "
        f"{PROBE_TOP_K} among {book_count} book(s) (modes: {', '.join(modes)})"
    )
    if missed:
        description += "; missed: " + ", ".join(f"{o.probe.title!r} ({o.mode})" for o in missed)
    return RetrievalReport(not missed, description, probe_kind, outcomes)


class EmbedOnce(WrappedEmbedder):
    """An embedder that embeds each text once, then answers it from memory."""

    def __init__(self, embedder: Embedder) -> None:
        super().__init__(embedder)
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self._embedder.embed(missing), strict=True))
        return np.stack([self._vectors[text] for text in texts])


def _loaded_probes(
    store: BookVectorStore, probes: tuple[RetrievalProbe, ...]
) -> list[RetrievalProbe]:
    """The probes whose book is in the collection, looked up by point id (no payload scan)."""
    ids = {book_point_id(probe.source_file, probe.book_index): probe for probe in probes}
    points = store.retrieve(list(ids))
    loaded = {point.id for point in points if point.payload.get("title") == ids[point.id].title}
    return [probe for point_id, probe in ids.items() if point_id in loaded]


def _self_probes(store: BookVectorStore) -> list[RetrievalProbe]:
    """A few loaded books, each queried with exactly the text its vector was made from."""
    points, _ = store.scroll(SELF_PROBE_COUNT)
    probes = []
    for point in points:
        book = book_from_payload(point.payload)
        probes.append(RetrievalProbe(book.embedding_text, book.title, book.source_file, book.index))
    return probes


@dg.asset_check(
    # By key: the asset module imports this one (the model switch step runs these probes).
    asset=dg.AssetKey("book_embeddings"),
    name="retrieval_sanity",
    description=f"Queries written for known books find them in the top {PROBE_TOP_K}: a wrong "
    "model, broken vectors or an empty collection fails here instead of in a user's search.",
)
def book_embeddings_retrieval_sanity(
    context: dg.AssetCheckExecutionContext,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
    pipeline_state: PipelineStateResource,
) -> dg.AssetCheckResult:
    with qdrant.open_versions(on_wait=context.log.warning) as catalog:
        # The version search reads, probed with its own model (the old one, while a new
        # model's version is being built).
        store, choice = current_version(catalog, embedder.choice, embedder.model_name())
        model = embedder.get_embedder(choice)
        billed = choice.provider == "openai"
        probe_embedder = probe_embedder_for(
            model, billed, embedder, pipeline_state, context.run.run_id
        )
        recorded_books = pipeline_state.ledger().loaded_books(store.stamp())
        try:
            report = evaluate_retrieval(store, probe_embedder, recorded_books=recorded_books)
        except TokenBudgetExceeded as error:
            report = RetrievalReport(False, f"the probes were not sent: {error}", "none", [])
    if not report.passed:
        context.log.error(report.description)
    else:
        context.log.info(report.description)
    return dg.AssetCheckResult(
        passed=report.passed,
        description=report.description,
        metadata={
            "probe_kind": report.probe_kind,
            "probes": dg.MetadataValue.md(report.markdown()),
            "embedding_model": model.model_name,
            **({"embedding_tokens": probe_embedder.tokens} if billed else {}),
        },
    )


def probe_embedder_for(
    model: Embedder,
    billed_by_token: bool,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateResource,
    run_id: str,
) -> CachedEmbedder:
    """`model` through the cache: a self probe is a book's own text, which the run has just
    paid for. A paid probe counts against the run's token budget like a file."""
    return CachedEmbedder(
        model,
        pipeline_state.embedding_cache(),
        count_tokens if billed_by_token else None,
        pipeline_state.token_budget(run_id, embedder.token_limit_per_run),
        budget_entry="retrieval_sanity probe",
    )
