"""What a finished run left in Dagster's storage folder, and whether anything still needs it.

The default IO manager keeps every step's output under `$DAGSTER_HOME/storage/<run id>/<step
key>/`: a file's parsed books and its vectors, about 3 kB per book. Only a re-execution reads
them again, from failure, and only while the run's files still wait for it. This module knows
the folder's layout (Dagster-free) and asks the load ledger whether the files a run worked on
have been dealt with since; defs/retention.py decides when to remove it.
"""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from book_pipeline.core.books.files import mapping_key_for
from book_pipeline.core.ingest.ledger import LedgerEntry

# Dagster's compute logs (the run's stdout and stderr, shown in the UI) share the run's folder;
# they go with the run's record (the run history's retention), not with its outputs.
COMPUTE_LOGS_FOLDER = "compute_logs"
# The graph-backed asset's steps: `book_embeddings.<op>[<mapping key>]`.
_GRAPH_PREFIX = "book_embeddings."
_MAPPING_KEY = re.compile(r"\[([^\]]+)\]$")


@dataclass(frozen=True)
class RunOutputs:
    """One run's step outputs: its folder, and the mapping keys of the files they are about."""

    run_id: str
    folder: Path
    mapping_keys: frozenset[str]

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._output_paths() if path.is_file())

    def remove(self) -> None:
        """Every step output; the compute logs stay."""
        for path in self._output_paths():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _output_paths(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        step_folders = [p for p in self.folder.iterdir() if p.name != COMPUTE_LOGS_FOLDER]
        return [nested for folder in step_folders for nested in [folder, *folder.rglob("*")]]


def runs_with_outputs(storage_folder: Path) -> list[RunOutputs]:
    """Every run folder that holds outputs of the book_embeddings graph's steps."""
    if not storage_folder.is_dir():
        return []
    found = []
    for folder in sorted(path for path in storage_folder.iterdir() if path.is_dir()):
        steps = [p.name for p in folder.iterdir() if p.name.startswith(_GRAPH_PREFIX)]
        if not steps:
            continue
        keys = {match.group(1) for step in steps if (match := _MAPPING_KEY.search(step))}
        found.append(RunOutputs(folder.name, folder, frozenset(keys)))
    return found


def files_dealt_with_since(
    entries: dict[str, LedgerEntry], mapping_keys: frozenset[str], since: float
) -> bool:
    """Whether every file of these mapping keys was loaded, refused or removed at `since` (a
    run's start, as a unix time) or later: nothing then waits for that run's outputs (a refused
    file is read again only by a new run, after a fix). A file the ledger does not know is
    still pending."""
    by_key = {mapping_key_for(name): entry for name, entry in entries.items()}
    return all(key in by_key and by_key[key].updated_at >= since for key in mapping_keys)
