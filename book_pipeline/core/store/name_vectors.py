"""Title-and-author vectors: the character trigrams of a book's title and author, for names
typed with a letter or two wrong ("hemmingway", "agatha cristie", "metamorphisis").

Each word of the accent-folded, lower-cased title and author is padded with a space on both
sides and cut into its trigrams ("lem" is " le", "lem", "em "), so a trigram that crosses a word
boundary only matches a word that starts or ends there: "lem" finds Stanisław Lem before
"problem". A book stores each of its trigrams with weight 1 and a query each of its own with
weight 1/n, so a book's score (plain dot product, no IDF) is the share of the query's trigrams
found in its title and author: 1.0 when the query is all there, about 0.7 for one wrong letter
in a nine-letter name, near 0 for a sentence about something else. That scale is what the
default search's fusion (`search_fusion`) reads, the same on every collection.

A trigram's id is its CRC-32: stable across processes and machines (Python's `hash` is not),
and the same in both engines. Two trigrams sharing an id only blur a score, never fail a write.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from functools import lru_cache

from book_pipeline.core.books.parsing import BookRecord
from book_pipeline.core.store.keyword_vectors import SparseVector

# The sparse vector's name in both engines, beside the BM25 one.
NAME_VECTOR_NAME = "title_author_trigrams"
# Two words at least this alike (Dice of their trigrams) are one word typed two ways: one or
# two letters off in a name of six or more letters.
WORD_MATCH = 0.5
_TRIGRAM = 3
_WORD = re.compile(r"[^\W_]+")
# Letters that Unicode does not decompose into a base letter and an accent.
_UNDECOMPOSED = str.maketrans(
    {"ł": "l", "ø": "o", "đ": "d", "ħ": "h", "\u0131": "i"}
    | {"æ": "ae", "œ": "oe", "ß": "ss", "þ": "th"}
)


def fold(text: str) -> str:
    """Lower case without accents: "Brontë" is "bronte", "Stanisław" "stanislaw"."""
    if text.isascii():  # most titles and names: nothing to decompose, and 20 times faster
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_UNDECOMPOSED))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def trigrams(text: str) -> set[str]:
    """The trigrams of each word of `text`, folded and padded with a space at both ends."""
    return set().union(*(_word_trigrams(word) for word in _WORD.findall(fold(text))))


def _word_trigrams(word: str) -> set[str]:
    padded = f" {word} "
    return {padded[start : start + _TRIGRAM] for start in range(len(padded) - 2)}


def share_of_query_held(query: str, title: str, author: str) -> float:
    """How much of the query the title and author hold, word by word: each query word counts
    by its closest word there (the Dice coefficient of their trigrams: 1 the same word, about
    0.6 to 0.85 one or two letters off), or 0 when none is at least `WORD_MATCH` alike; the
    mean over the query's words. Word by word, a long title cannot hold a sentence by having
    a few of the trigrams of each of its words, as the summed trigrams would let it."""
    query_words = [_word_trigrams(word) for word in _WORD.findall(fold(query))]
    book_words = [_word_trigrams(word) for word in _WORD.findall(fold(f"{title} {author}"))]
    if not query_words or not book_words:
        return 0.0
    held = 0.0
    for query_word in query_words:
        closest = max(_dice(query_word, book_word) for book_word in book_words)
        held += closest if closest >= WORD_MATCH else 0.0
    return held / len(query_words)


def _dice(first: set[str], second: set[str]) -> float:
    return 2 * len(first & second) / (len(first) + len(second))


def book_name_vector(book: BookRecord) -> SparseVector:
    return document_name_vector(book.title, book.author)


def document_name_vector(title: str, author: str) -> SparseVector:
    ids = _trigram_ids(f"{title} {author}")
    return SparseVector(ids, [1.0] * len(ids))


def query_name_vector(text: str) -> SparseVector:
    """Each trigram weighs 1/n: a book's score is the share of the query found in it."""
    ids = _trigram_ids(text)
    return SparseVector(ids, [1.0 / len(ids)] * len(ids)) if ids else SparseVector([], [])


def _trigram_ids(text: str) -> list[int]:
    # A set: two trigrams that share a CRC would be a duplicate index, which Qdrant refuses.
    return sorted(set().union(*(_word_trigram_ids(word) for word in _WORD.findall(fold(text)))))


# Authors and title words repeat across a catalogue: a load's books share most of their words,
# so each word's ids are computed once (a tenth of the store's write time otherwise).
@lru_cache(maxsize=65_536)
def _word_trigram_ids(word: str) -> frozenset[int]:
    return frozenset(zlib.crc32(gram.encode()) & 0x7FFFFFFF for gram in _word_trigrams(word))
