"""An Edge shard on disk: creating and loading it, its manifest (what the shard was made for, its
generation and last load), the store's lock, and the `.partial-*` and `.previous-*` folders that
make creating, copying and swapping a shard crash-safe.

Layout of the store folder (`$BOOK_PIPELINE_DATA_DIR/qdrant-edge`):

    .lock                       held (flock) by the one process that has the store open
    <collection>/               the Edge shard: WAL, segments, edge_config.json
    <collection>/book_pipeline.json   what the shard was made for (model, dimension), its
                                      generation and the sequence number of its last load

A shard is created, or copied from the previous version's store, in a `.<collection>.partial-*`
folder that is renamed into place only once complete (and, for a copy, verified): a
`<collection>` folder is therefore always a whole shard. One without its `book_pipeline.json`, or
one Edge cannot load, is reported and left alone, never replaced by an empty one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import qdrant_edge as edge

from book_pipeline.core.settings import CollectionSettings
from book_pipeline.core.store.base import (
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    CollectionStamp,
)
from book_pipeline.core.store.edge_conversions import edge_config
from book_pipeline.core.store.errors import (
    StoreDamagedError,
    StoreLockedError,
)

MANIFEST_NAME = "book_pipeline.json"

# Edge's own record of the shard's layout, written when the shard is created.
EDGE_CONFIG_NAME = "edge_config.json"

LOCK_NAME = ".lock"

PARTIAL_PREFIX = "."

PARTIAL_MARK = ".partial-"

PREVIOUS_MARK = ".previous-"

_LOCK_POLL_SECONDS = 0.2


def has_sparse_vector(path: Path, name: str) -> bool:
    """Whether the loaded shard stores the sparse vector `name` (Edge's own config file says)."""
    try:
        config = json.loads((path / EDGE_CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return name in (config.get("sparse_vectors") or {})


def partial_folder(folder: Path, collection: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{collection}{PARTIAL_MARK}", dir=folder))


def new_manifest(model_name: str, dimension: int, generation: str | None) -> dict[str, Any]:
    """What a new shard is made for, and that no load has written to it yet."""
    manifest: dict[str, Any] = {"embedding_model": model_name, "dimension": dimension}
    if generation is not None:
        manifest["generation"] = generation
    manifest["load_sequence"] = 0
    return manifest


def write_manifest(
    shard_path: Path, manifest: dict[str, Any], file_name: str = MANIFEST_NAME
) -> None:
    """Replace the manifest (or another small JSON file of the store) whole: a temporary file
    renamed over it, never half written."""
    manifest_path = shard_path / file_name
    temporary = manifest_path.with_name(f".{file_name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, manifest_path)
    directory = os.open(shard_path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def manifest_stamp(manifest: dict[str, Any]) -> CollectionStamp:
    return CollectionStamp(manifest.get("generation"), int(manifest.get("load_sequence", 0)))


def read_edge_stamp(folder: Path, collection: str) -> CollectionStamp | None:
    """The collection's stamp from its manifest alone: no lock, no shard load, so a sensor can
    ask while a load holds the store. None when there is no collection."""
    shard_path = folder.expanduser().resolve() / collection
    if not shard_path.exists():
        return None
    return manifest_stamp(read_manifest(shard_path))


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        int(manifest["dimension"])
        int(manifest.get("load_sequence", 0))
    except FileNotFoundError:
        raise StoreDamagedError(
            f"{path} is not a complete book_pipeline shard (no {MANIFEST_NAME}): it was partly "
            "written or made by something else. It is left as it is; move it away to start an "
            "empty collection, or restore it from a backup."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreDamagedError(
            f"{manifest_path} cannot be read ({error}); the shard in {path} is left as it is"
        ) from None
    return manifest


def lock_store_folder(
    folder: Path, wait_seconds: float, on_wait: Callable[[str], None] | None
) -> Any:
    """Hold the store's lock file, waiting a bounded time while another process has it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a")
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise StoreLockedError(
                    f"the embedded Qdrant store {folder} is still in use by another process "
                    f"after {wait_seconds:.0f} s (a running load?). Try again when it has "
                    "finished, or use a Qdrant server (QDRANT_URL) for concurrent access."
                ) from None
            if on_wait is not None and not announced:
                on_wait(
                    f"the embedded Qdrant store {folder} is in use by another process; "
                    f"waiting up to {wait_seconds:.0f} s"
                )
                announced = True
            time.sleep(_LOCK_POLL_SECONDS)


def remove_partial_folders(folder: Path, collection: str) -> None:
    """Leftovers of a create or copy that died before its rename: never a complete shard.

    A swap that died between its two renames left the old shard in a `.previous-*` folder and
    none in place: that one is put back (it is whole); one beside a shard in place is deleted.
    """
    for leftover in folder.glob(f"{PARTIAL_PREFIX}{collection}{PARTIAL_MARK}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for previous in folder.glob(f"{PARTIAL_PREFIX}{collection}{PREVIOUS_MARK}*"):
        if not (folder / collection).exists() and (previous / collection).is_dir():
            os.replace(previous / collection, folder / collection)
        shutil.rmtree(previous, ignore_errors=True)


def build_empty_shard(
    path: Path, settings: CollectionSettings, dimension: int, manifest: dict[str, Any]
) -> None:
    """A closed, empty shard with the payload indexes and, written last, its manifest (a
    rebuilt shard is given the old one's)."""
    shard = edge.EdgeShard.create(str(path), edge_config(settings, dimension))
    schemas = {
        **dict.fromkeys(KEYWORD_FIELDS, edge.PayloadSchemaType.Keyword),
        **dict.fromkeys(INTEGER_FIELDS, edge.PayloadSchemaType.Integer),
    }
    for field, schema in schemas.items():
        shard.update(edge.UpdateOperation.create_field_index(field, schema))
    shard.flush()
    shard.close()
    write_manifest(path, manifest)


def load_shard(path: Path) -> tuple[edge.EdgeShard, dict[str, Any]]:
    """Open a shard and its manifest, or say what is wrong with the folder (never repair it)."""
    manifest = read_manifest(path)
    try:
        shard = edge.EdgeShard.load(str(path))
    except Exception as error:  # qdrant-edge raises bare Exception for everything
        if "WouldBlock" in str(error):
            raise StoreLockedError(
                f"the Qdrant Edge shard {path} is open in another process"
            ) from None
        raise StoreDamagedError(
            f"the Qdrant Edge shard {path} cannot be loaded ({error}); it is left as it is. "
            "Restore it from a backup or move it away to start an empty collection."
        ) from None
    return shard, manifest


def swap_in_folder(folder: Path, collection: str, partial: Path) -> None:
    """Put the closed shard in `partial` in place of the collection's closed shard: the old one
    waits in a `.previous-*` folder until the new one is in place (an open that finds only that
    folder puts it back, `remove_partial_folders`), then is deleted. On an error the old shard
    is put back."""
    shard_path = folder / collection
    previous = Path(
        tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{collection}{PREVIOUS_MARK}", dir=folder)
    )
    moved_away = False
    try:
        os.replace(shard_path, previous / collection)
        moved_away = True
        os.replace(partial, shard_path)
    except BaseException:
        if moved_away:
            os.replace(previous / collection, shard_path)
        shutil.rmtree(previous, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)
