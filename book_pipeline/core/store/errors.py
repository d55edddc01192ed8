"""How the store fails, in its own terms: callers (the ops, the sensor, the CLI) handle these and
never import an engine's errors."""


class StoreLockedError(RuntimeError):
    """Another process kept the embedded store open for longer than the configured wait."""


class StoreUnreachableError(RuntimeError):
    """The Qdrant server did not answer; the message names the URL, never the API key."""


class CollectionMismatchError(RuntimeError):
    """The existing collection was built for other vectors; writing into it would corrupt search."""


class StoreDamagedError(RuntimeError):
    """The store's folder cannot be read as a book collection; it is left exactly as it is."""


class StoreRefusedError(RuntimeError):
    """The Qdrant server answered a request with an error; the message is its answer."""


class MigrationError(RuntimeError):
    """A copy between stores cannot start, or the target does not hold what was copied."""
