"""What every subcommand shares: the refusal, exit codes, messages on stderr, store errors."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1
# The same code argparse uses for bad arguments: in both cases the user has to change the command.
EXIT_REFUSED = 2


class CliError(Exception):
    """A refusal the user can fix by changing the command; nothing was written."""


def say(message: str) -> None:
    """Progress and waits go to stderr: stdout holds the answer, which --json keeps parseable."""
    print(message, file=sys.stderr)


def store_errors() -> tuple[type[Exception], ...]:
    """What opening, reading or copying a store refuses with, each message naming the store."""
    from book_pipeline.core.store.errors import (
        CollectionMismatchError,
        MigrationError,
        StoreDamagedError,
        StoreLockedError,
        StoreRefusedError,
        StoreUnreachableError,
    )

    return (
        MigrationError,
        CollectionMismatchError,
        StoreLockedError,
        StoreDamagedError,
        StoreUnreachableError,
        StoreRefusedError,
    )
