"""What the next run's embedding will cost, before it runs: its pending files read and parsed,
their texts looked up in the embedding cache, and the rest counted offline. No API is called."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import diskcache

from book_pipeline.core.books.files import BookFileError, FileSnapshot, read_book_file
from book_pipeline.core.books.parsing import parse_book_data
from book_pipeline.core.embedding.cache import cache_key
from book_pipeline.core.embedding.costs import cost_usd, count_tokens


@dataclass(frozen=True)
class EmbeddingEstimate:
    # The pending files the run would embed, and those its transform would refuse (not embedded).
    files: list[str]
    refused: list[str]
    books: int
    cached_texts: int
    # The tokens of the texts the cache does not hold: what the run pays for.
    tokens: int
    cost_usd: float | None
    # True when `tokens` is what the endpoint bills (OpenAI's cl100k_base models).
    exact_tokens: bool


def estimate_embedding(
    pending: Sequence[FileSnapshot],
    books_folder: Path,
    max_file_bytes: int,
    cache: diskcache.Cache,
    model_name: str,
    price_per_mtok: float | None,
    exact_tokens: bool,
) -> EmbeddingEstimate:
    """The pending files as a run in one process embeds them: file after file, each sending
    the texts the cache does not hold, so a text that an earlier file of the run sends is
    served from the cache to the later ones (within a file, each copy is sent)."""
    files: list[str] = []
    refused: list[str] = []
    books = cached_texts = tokens = 0
    sent_before: set[str] = set()
    for snapshot in pending:
        try:
            read_snapshot, data = read_book_file(snapshot.path, books_folder, max_file_bytes)
            parsed = parse_book_data(read_snapshot, data)
        except BookFileError:
            refused.append(snapshot.name)
            continue
        files.append(parsed.file_name)
        texts = [book.embedding_text for book in parsed.books]
        to_send = [
            text
            for text in texts
            if text not in sent_before and cache_key(model_name, text) not in cache
        ]
        books += len(texts)
        cached_texts += len(texts) - len(to_send)
        tokens += count_tokens(to_send)
        sent_before.update(texts)
    return EmbeddingEstimate(
        files,
        refused,
        books,
        cached_texts,
        tokens,
        cost_usd(tokens, price_per_mtok),
        exact_tokens,
    )
