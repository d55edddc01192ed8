"""The step after each load that, once a new model's collection version holds every file, checks
it against the current one and switches search over to it (core/ingest/rebuild.py).

The check: the retrieval probes (`retrieval_sanity`'s) on both versions, each with its own
model; the rule (`BOOK_PIPELINE_MODEL_SWITCH_RULE`) compares what they found. Passed, the new
version becomes current in one atomic step; failed, the current version stays, and this step
fails, so the run fails and its alert fires, naming both results.
"""

import dagster as dg

from book_pipeline.core.embedding.costs import TokenBudgetExceeded
from book_pipeline.core.ingest.rebuild import (
    LoadingVersions,
    current_version,
    rebuild_progress,
    switch_allowed,
)
from book_pipeline.defs.checks import RetrievalReport, evaluate_retrieval, probe_embedder_for
from book_pipeline.defs.resources import (
    BooksFolder,
    EmbedderResource,
    PipelineStateResource,
    QdrantResource,
)

MODEL_SWITCH = dg.AssetCheckSpec(
    "model_switch",
    asset="book_embeddings",
    description="After a change of embedding model: how far the new collection version got, "
    "and, once it holds every file, whether its retrieval probes passed the switch rule against "
    "the current version's (then it became current). Nothing to do when the current version "
    "is the configured model's.",
)


def _probe_both(
    context: dg.OpExecutionContext,
    versions: LoadingVersions,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateResource,
) -> tuple[RetrievalReport, RetrievalReport]:
    """The retrieval probes on the current version (with its own model) and on the new one."""
    current, current_choice = current_version(
        versions.catalog, embedder.choice, versions.plan.model
    )
    target = versions.target
    assert target is not None
    run_id = context.run.run_id
    try:
        old = evaluate_retrieval(
            current,
            probe_embedder_for(
                embedder.get_embedder(current_choice),
                current_choice.provider == "openai",
                embedder,
                pipeline_state,
                run_id,
            ),
        )
        new = evaluate_retrieval(
            target,
            probe_embedder_for(
                embedder.get_embedder(), embedder.billed_by_token, embedder, pipeline_state, run_id
            ),
        )
    except TokenBudgetExceeded as error:
        raise dg.Failure(
            description=f"the switch's probes were not sent: {error}", allow_retries=False
        ) from error
    return old, new


def _found(report: RetrievalReport) -> int:
    return sum(outcome.rank is not None for outcome in report.outcomes)


# No return annotation: Dagster would type-check the check's output.
@dg.op(ins={"loaded": dg.In(dg.Nothing)})
def switch_to_rebuilt_version(
    context: dg.OpExecutionContext,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
    books_folder: BooksFolder,
    pipeline_state: PipelineStateResource,
):
    """Report the rebuild's progress; once complete, probe both versions, then switch or fail."""
    model_name = embedder.model_name()
    with qdrant.open_for_loading(model_name, context.log.warning) as versions:
        plan = versions.plan
        if plan.target is None:
            raise dg.Failure(description=plan.describe(), allow_retries=False)
        if not plan.rebuilding:
            return dg.AssetCheckResult(
                check_name=MODEL_SWITCH.name,
                passed=True,
                description=f"no model change: {plan.current!r} is built with {model_name!r}",
            )
        progress, listing = rebuild_progress(
            versions, pipeline_state.ledger(), books_folder.folder, embedder.billed_by_token
        )
        described = progress.describe(embedder.price(model_name), model_name)
        context.log.info(described)
        metadata = {
            "current_version": plan.current,
            "new_version": progress.target,
            "files_loaded": progress.files_loaded,
            "files_total": progress.files_total,
            "books_loaded": progress.books_loaded,
            "embedding_tokens": progress.tokens,
        }
        if not progress.complete or listing.review.drifted:
            return dg.AssetCheckResult(
                check_name=MODEL_SWITCH.name,
                passed=True,
                description=f"{described}; the switch waits until every file is loaded",
                metadata=metadata,
            )
        return _gate_and_switch(context, versions, embedder, pipeline_state, qdrant, metadata)


def _gate_and_switch(
    context: dg.OpExecutionContext,
    versions: LoadingVersions,
    embedder: EmbedderResource,
    pipeline_state: PipelineStateResource,
    qdrant: QdrantResource,
    metadata: dict,
) -> dg.AssetCheckResult:
    plan, rule = versions.plan, qdrant.model_switch_rule
    old, new = _probe_both(context, versions, embedder, pipeline_state)
    old_found, new_found = _found(old), _found(new)
    verdict = (
        f"switch rule {rule!r}: the new version {plan.target!r} ({plan.model}) found "
        f"{new_found} of {len(new.outcomes)} probe(s), the current {plan.current!r} "
        f"({plan.current_model}) {old_found} of {len(old.outcomes)}"
    )
    metadata = {
        **metadata,
        "switch_rule": rule,
        "new_version_probes": dg.MetadataValue.md(new.markdown()),
        "current_version_probes": dg.MetadataValue.md(old.markdown()),
    }
    if not switch_allowed(rule, old_found, new_found, len(new.outcomes)):
        context.log.error(f"{verdict}: {plan.current!r} stays current")
        raise dg.Failure(
            description=f"{verdict}: {plan.current!r} stays current. Switch by hand with "
            f"`book-pipeline versions switch {versions.catalog.number_of(plan.target or '')}`, "
            "or configure the current model again",
            metadata=metadata,
            allow_retries=False,
        )
    assert plan.target is not None
    versions.catalog.switch(plan.target)
    context.log.info(f"{verdict}: {plan.target!r} is current now")
    return dg.AssetCheckResult(
        check_name=MODEL_SWITCH.name,
        passed=True,
        description=f"{verdict}: switched to {plan.target!r}",
        metadata=metadata,
    )
