"""The query_data op: the CLI's `search`, launchable from the UI with the query in run config."""

from dataclasses import asdict

import dagster as dg
from pydantic import Field

from book_pipeline.core.ingest.rebuild import current_version
from book_pipeline.core.search import (
    SearchRefusedError,
    format_hits_table,
    hits_markdown,
    search_books,
)
from book_pipeline.defs.resources import EmbedderResource, QdrantResource


class QueryConfig(dg.Config):
    query: str = Field(
        default="",
        description="A sentence describing the book you are looking for, or its title or "
        "author's words (optional with `like`)",
    )
    # A plain string: Dagster's config has no literal types; search_books refuses other names.
    mode: str | None = Field(
        default=None,
        description="hybrid (meaning and words fused), dense (meaning) or keyword (BM25 on "
        "title, author and description); unset: hybrid, or dense for a collection loaded by "
        "an earlier release",
    )
    like: list[str] = Field(
        default=[],
        description="Books to find more like: exact titles, or FILE:INDEX (e.g. "
        "gothic_horror.txt:501) when several books share a title; they are never listed",
    )
    unlike: list[str] = Field(
        default=[], description="With `like`: books to steer away from (titles or FILE:INDEX)"
    )
    limit: int = Field(default=5, description="How many books to return")
    author: str | None = Field(default=None, description="Only books by exactly this author")
    year_from: int | None = Field(
        default=None, description="Only books from this year on (-500 is 500 BC)"
    )
    year_to: int | None = Field(
        default=None, description="Only books up to this year (-500 is 500 BC)"
    )


@dg.op
def search_loaded_books(
    context: dg.OpExecutionContext,
    config: QueryConfig,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
) -> dg.Output[list[dict]]:
    """Search book_embeddings; the results are logged and shown as a table on the run."""
    try:
        with qdrant.open_versions(on_wait=context.log.warning, read_only=True) as catalog:
            # The current version, with the model it was built with (a rebuild may be going on).
            store, choice = current_version(catalog, embedder.choice, embedder.model_name())
            model = embedder.get_embedder(choice)
            hits = search_books(
                store,
                model,
                config.query,
                config.limit,
                author=config.author,
                year_from=config.year_from,
                year_to=config.year_to,
                mode=config.mode,
                like=config.like,
                unlike=config.unlike,
            )
    except SearchRefusedError as error:
        # The same query against the same collection would be refused again.
        raise dg.Failure(description=str(error), allow_retries=False) from None
    context.log.info(f"{len(hits)} book(s) for {config.query!r}:\n{format_hits_table(hits)}")
    return dg.Output(
        [asdict(hit) for hit in hits],
        metadata={
            "query": config.query,
            "mode": config.mode or "default",
            "result_count": len(hits),
            "results": dg.MetadataValue.md(hits_markdown(hits)),
        },
    )
