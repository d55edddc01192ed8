"""`book-pipeline migrate-store`: copy the collection between the embedded store, a server and
another folder, verified; nothing is re-embedded."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from book_pipeline.cli.common import EXIT_OK, CliError, say, store_errors
from book_pipeline.core.settings import VARIABLES, Settings

if TYPE_CHECKING:
    from book_pipeline.core.store.base import BookVectorStore


MIGRATE_BATCH_SIZE = 256


MIGRATE_PROGRESS_EVERY = 10_000


def add_parser(subcommands: argparse._SubParsersAction) -> None:
    migrate = subcommands.add_parser(
        "migrate-store",
        help="copy the Qdrant collection between the embedded store, a server, another folder",
        description="Copy the configured collection, vectors and payloads, from the configured "
        "store (the embedded Qdrant Edge store, or $QDRANT_URL when set) or the one named by "
        "--from-*, to a Qdrant server (--to-url) or an embedded folder (--to-path: Edge, e.g. "
        "a server's collection brought home, or a backup). --from-legacy copies the previous "
        "version's embedded store (qdrant-client local mode, $BOOK_PIPELINE_DATA_DIR/qdrant) into "
        "the configured store, as the first run does. Nothing is re-embedded; the copy is checked "
        "by count and sampled vectors. A new target collection gets the same dimension and model "
        "and the configured QDRANT_* layout (shards, replicas, on-disk vectors, ...); an existing "
        "one must be for the same model. Safe to run again.",
    )
    source = migrate.add_mutually_exclusive_group()
    source.add_argument("--from-url", metavar="URL", help="copy from this Qdrant server")
    source.add_argument(
        "--from-path", type=Path, metavar="PATH", help="copy from this embedded (Edge) store"
    )
    source.add_argument(
        "--from-legacy",
        type=Path,
        nargs="?",
        const=_LEGACY_DEFAULT,
        metavar="PATH",
        help="copy from the previous version's store (default: $BOOK_PIPELINE_DATA_DIR/qdrant)",
    )
    target = migrate.add_mutually_exclusive_group()
    target.add_argument("--to-url", metavar="URL", help="a Qdrant server, e.g. http://host:6333")
    target.add_argument("--to-path", type=Path, metavar="PATH", help="an embedded (Edge) store")
    for end in ("from", "to"):
        migrate.add_argument(
            f"--{end}-api-key-env",
            metavar="VAR",
            help=f"the NAME of the environment variable holding the {end} server's API key "
            f"(default: {VARIABLES.qdrant_api_key.name}, if set); never the key itself",
        )
    migrate.add_argument(
        "--to-collection", metavar="NAME", help="target collection (default: the same name)"
    )
    migrate.add_argument(
        "--batch-size",
        type=int,
        default=MIGRATE_BATCH_SIZE,
        metavar="N",
        help=f"points per request (default: {MIGRATE_BATCH_SIZE})",
    )
    migrate.set_defaults(handler=run_migrate_store)


# argparse's marker for a bare --from-legacy: the configured data folder's old store.
_LEGACY_DEFAULT = Path("\0legacy")


@dataclasses.dataclass(frozen=True)
class _Copied:
    points: int
    target_location: str
    target_count: int


def run_migrate_store(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    settings = Settings.from_environment()
    target_collection = args.to_collection or settings.collection
    try:
        if args.from_legacy is not None:
            copied = _copy_legacy_store(args, settings, target_collection)
        else:
            copied = _copy_store(args, settings, target_collection)
    except store_errors() as error:
        raise CliError(str(error)) from None
    print(
        f"copied {copied.points:,} points; collection {target_collection!r} at "
        f"{copied.target_location} holds {copied.target_count:,} points"
    )
    if args.to_url:
        print(f"to use it: export QDRANT_URL={args.to_url} (and QDRANT_API_KEY if it needs one)")
    return EXIT_OK


def _copy_legacy_store(
    args: argparse.Namespace, settings: Settings, target_collection: str
) -> _Copied:
    """--from-legacy: the previous version's store into an empty Edge target by the first run's
    upgrade, into any other target by a plain copy."""
    from book_pipeline.core.store.edge import EdgeStore
    from book_pipeline.core.store.legacy import local_mode_has_collection, upgrade_local_mode_store

    legacy = settings.legacy_path if args.from_legacy == _LEGACY_DEFAULT else args.from_legacy
    legacy = legacy.expanduser().resolve()
    if not local_mode_has_collection(legacy, settings.collection):
        raise CliError(
            f"no collection {settings.collection!r} in a previous version's store at {legacy}"
        )
    to_path = _to_path(args)
    target_url = args.to_url or (None if to_path else settings.qdrant_url)
    target_path = to_path or settings.edge_path.expanduser().resolve()
    with _open_store(
        settings, target_collection, target_url, target_path, args.to_api_key_env
    ) as target:
        if isinstance(target, EdgeStore) and not target.collection_exists():
            points = upgrade_local_mode_store(legacy, target, say, args.batch_size)
        else:
            points = _copy_local_mode_store(legacy, settings.collection, target, args.batch_size)
        return _Copied(points, target.location, target.count())


def _copy_local_mode_store(
    legacy: Path, collection: str, target: BookVectorStore, batch_size: int
) -> int:
    from book_pipeline.core.store.copying import copy_collection
    from book_pipeline.core.store.server_opening import open_local_mode_store

    source = open_local_mode_store(legacy, collection)
    try:
        return copy_collection(source, target, batch_size, _progress_printer(batch_size))
    finally:
        source.close()


def _copy_store(args: argparse.Namespace, settings: Settings, target_collection: str) -> _Copied:
    """The configured store, or the one --from-* names, to --to-url or --to-path."""
    from book_pipeline.core.store.copying import copy_collection

    collection = settings.collection
    to_path = _to_path(args)
    if args.to_url is None and to_path is None:
        raise CliError("say where to copy to: --to-url URL or --to-path PATH")
    from_url = args.from_url or (None if args.from_path else settings.qdrant_url)
    from_path = (args.from_path or settings.edge_path).expanduser().resolve()
    if from_url is None and not (from_path / collection).is_dir():
        raise CliError(f"no embedded Qdrant store at {from_path}")
    if to_path is not None and from_url is None and to_path == from_path:
        raise CliError(f"--to-path is the store being copied ({from_path})")
    target_path = to_path or settings.edge_path.expanduser().resolve()
    with (
        _open_store(settings, collection, from_url, from_path, args.from_api_key_env) as source,
        _open_store(
            settings, target_collection, args.to_url, target_path, args.to_api_key_env
        ) as target,
    ):
        print(
            f"copying collection {collection!r} ({source.count():,} points) of "
            f"{source.engine} {source.location} to collection {target_collection!r} at "
            f"{target.location}"
        )
        points = copy_collection(
            source, target, args.batch_size, _progress_printer(args.batch_size)
        )
        return _Copied(points, target.location, target.count())


def _to_path(args: argparse.Namespace) -> Path | None:
    return args.to_path.expanduser().resolve() if args.to_path else None


def _open_store(
    settings: Settings, name: str, url: str | None, path: Path, api_key_env: str | None
) -> AbstractContextManager[BookVectorStore]:
    from book_pipeline.core.store.opening import open_vector_store

    # The collection settings apply only where the collection is created: the target.
    return open_vector_store(
        name,
        path,
        url=url,
        api_key=_api_key_from_environment(api_key_env) if url else None,
        lock_wait_seconds=settings.lock_wait_seconds,
        on_wait=say,
        settings=settings.collection_settings,
    )


def _progress_printer(batch_size: int) -> Callable[[int], None]:
    """A progress line about every MIGRATE_PROGRESS_EVERY points copied."""

    def progress(copied: int) -> None:
        if copied % MIGRATE_PROGRESS_EVERY < batch_size:
            say(f"  {copied:,} points copied")

    return progress


def _api_key_from_environment(variable: str | None) -> str | None:
    """The key is read from a variable named on the command line: argv is visible to every user."""
    name = variable or VARIABLES.qdrant_api_key.name
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise CliError(
            "--to-api-key-env takes the name of an environment variable that holds the key, "
            "not the key itself"
        )
    # Read as QDRANT_API_KEY is, under the name given.
    key = dataclasses.replace(VARIABLES.qdrant_api_key, name=name).read()
    if variable is not None and not key:
        raise CliError(f"the environment variable {name} is not set")
    return key or None
