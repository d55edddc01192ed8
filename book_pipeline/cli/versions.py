"""`book-pipeline versions`: the collection's versions (one per embedding model), which one
search reads, how far a rebuild got; switching back at once, and removing unused versions."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.settings import Settings

if TYPE_CHECKING:
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.store.versions import VersionCatalog


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    versions = subcommands.add_parser(
        "versions",
        help="the collection's versions, one per embedding model: list, switch, remove unused",
        description="Changing the embedding model builds a new version of the collection "
        "beside the current one, which search reads until the new one holds every file and "
        "passed its check (docs/operations.md, 'Changing the embedding model'). Without an "
        "action: every version, its model and points, which is current, and how far a rebuild "
        "got and what it cost.",
    )
    versions.add_argument("--json", action="store_true", help="print the versions as JSON")
    versions.set_defaults(handler=run_list)
    actions = versions.add_subparsers(dest="action", metavar="ACTION")
    switch = actions.add_parser(
        "switch",
        help="make a version current at once (no embedding): a rollback",
        description="Make VERSION current in one atomic step; search embeds its queries with "
        "that version's own model. The version it replaces is marked rolled back: the "
        "pipeline does not switch to it again by itself (switching to it by hand does).",
    )
    switch.add_argument("version", metavar="VERSION", help="its number (1, 2...) or collection")
    switch.set_defaults(handler=run_switch)
    remove = actions.add_parser(
        "remove-unused",
        help="delete the versions that are not current (nor being built)",
        description="Delete every version but the current one and the one a rebuild is loading "
        "into. Without --yes, only lists them.",
    )
    remove.add_argument("--yes", action="store_true", help="delete them; without it, list them")
    remove.set_defaults(handler=run_remove_unused)


def describe_versions(
    catalog: VersionCatalog, settings: Settings, ledger: LoadLedger
) -> list[dict[str, Any]]:
    """Every version as `versions --json` prints it; the one being built with its progress."""
    from book_pipeline.core.embedding.choosing import recorded_model_name
    from book_pipeline.core.embedding.costs import price_per_mtok
    from book_pipeline.core.ingest.rebuild import LoadingVersions, plan_versions, rebuild_progress

    model = recorded_model_name(settings.embedder_choice)
    plan = plan_versions(catalog, model)
    rows = []
    for version in catalog.versions():
        row: dict[str, Any] = {
            "version": version.number,
            "collection": version.name,
            "model": version.model,
            "dimension": version.dimension,
            "points": version.points,
            "state": "current" if version.current else "not current",
            "rebuild": None,
        }
        if version.record.rolled_back:
            row["state"] = "rolled back"
        if plan.rebuilding and version.name == plan.target:
            progress, _ = rebuild_progress(
                LoadingVersions(catalog, plan),
                ledger,
                settings.books_folder,
                settings.embedder == "openai",
            )
            row["state"] = "being built"
            price = price_per_mtok(settings.embedder, model, settings.embedding_price_per_mtok)
            row["rebuild"] = {
                "files_loaded": progress.files_loaded,
                "files_total": progress.files_total,
                "books_loaded": progress.books_loaded,
                "tokens": progress.tokens if progress.billed_by_token else None,
                "description": progress.describe(price, model),
            }
        rows.append(row)
    return rows


def format_versions(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        line = (
            f"{row['version']:>3}  {row['collection']}  {row['model'] or 'unknown model'} "
            f"({row['dimension']}-d)  {row['points']} point(s)  {row['state']}"
        )
        if row["rebuild"]:
            line += f"\n     {row['rebuild']['description']}"
        lines.append(line)
    return "\n".join(lines) or "no version yet: nothing loaded"


def run_list(args: argparse.Namespace) -> int:
    from book_pipeline.core.ingest.ledger import LoadLedger
    from book_pipeline.core.store.opening import open_configured_versions

    settings = Settings.from_environment()
    try:
        with open_configured_versions(settings, say) as catalog:
            rows = describe_versions(catalog, settings, LoadLedger(settings.ledger_path))
    except store_errors() as error:
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        print(format_versions(rows))
    return EXIT_OK


def run_switch(args: argparse.Namespace) -> int:
    from book_pipeline.core.embedding.choosing import recorded_model_name
    from book_pipeline.core.store.opening import open_configured_versions
    from book_pipeline.core.store.versions import VersionError

    settings = Settings.from_environment()
    try:
        with open_configured_versions(settings, say) as catalog:
            name = catalog.resolve(args.version)
            previous = catalog.current_name()
            if name == previous:
                print(f"{name!r} is current already")
                return EXIT_OK
            catalog.switch(name, rolled_back=previous)
            model = catalog.model_of(name)
    except (VersionError, *store_errors()) as error:
        raise CliError(str(error)) from None
    print(f"{name!r} ({model}) is current: search reads it, embedding queries with {model}")
    if model != recorded_model_name(settings.embedder_choice):
        say(
            f"the configured model is not {model!r}: the pipeline loads nothing until it is "
            f"configured (BOOK_PIPELINE_EMBEDDER, BOOK_PIPELINE_EMBEDDING_MODEL), or until the "
            f"configured model's version is switched to; {previous!r} is marked rolled back"
        )
    return EXIT_OK


def run_remove_unused(args: argparse.Namespace) -> int:
    from book_pipeline.core.embedding.choosing import recorded_model_name
    from book_pipeline.core.ingest.rebuild import plan_versions
    from book_pipeline.core.store.opening import open_configured_versions

    settings = Settings.from_environment()
    try:
        with open_configured_versions(settings, say) as catalog:
            plan = plan_versions(catalog, recorded_model_name(settings.embedder_choice))
            keep = {plan.target} if plan.rebuilding and plan.target else set()
            if not args.yes:
                unused = [
                    name
                    for name in catalog.names()
                    if name != catalog.current_name() and name not in keep
                ]
                for name in unused:
                    print(f"would remove {name!r} ({catalog.model_of(name)})")
                say("nothing removed: add --yes to remove them" if unused else "nothing unused")
                return EXIT_OK
            removed = catalog.remove_unused(keep, lambda name: print(f"removed {name!r}"))
    except store_errors() as error:
        raise CliError(str(error)) from None
    if not removed:
        say("nothing unused")
    return EXIT_OK
