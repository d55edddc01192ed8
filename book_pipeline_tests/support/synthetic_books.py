"""Deterministic synthetic description files, for the benchmark and the tests."""

import random
from pathlib import Path

from book_pipeline.core.books.parsing import format_book_line

_GENRE_WORDS = {
    "mystery": ("detective", "alibi", "clue", "suspect", "inspector", "witness", "poison"),
    "fantasy": ("dragon", "kingdom", "sorcerer", "quest", "prophecy", "elves", "sword"),
    "science fiction": ("starship", "colony", "android", "galaxy", "orbit", "reactor", "alien"),
    "romance": ("wedding", "heartbreak", "letters", "summer", "longing", "reunion", "courtship"),
    "horror": ("haunted", "ghost", "curse", "cellar", "nightmare", "whispers", "asylum"),
    "history": ("empire", "revolution", "dynasty", "treaty", "archive", "century", "monarch"),
}
_COMMON_WORDS = (
    "the", "a", "story", "of", "young", "old", "city", "family", "who", "must", "discover",
    "between", "journey", "across", "their", "hidden", "past", "future", "river", "winter",
)  # fmt: skip
_FIRST_NAMES = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines")
_LAST_NAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Alvarez", "Haddad")
_TITLE_WORDS = ("Lantern", "Harbor", "Mirror", "Orchard", "Storm", "Labyrinth", "Compass", "Crown")


def synthetic_book_line(rng: random.Random, index: int, description_words: int = 60) -> str:
    genre = rng.choice(sorted(_GENRE_WORDS))
    words = [
        rng.choice(_GENRE_WORDS[genre] if rng.random() < 0.25 else _COMMON_WORDS)
        for _ in range(description_words)
    ]
    return format_book_line(
        index=index,
        title=f"The {rng.choice(_TITLE_WORDS)} of {rng.choice(_TITLE_WORDS)} {index}",
        year=rng.randint(1850, 2025),
        author=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
        description=f"A {genre} novel: " + " ".join(words) + ".",
    )


def write_synthetic_books(
    folder: Path, files: int, books_per_file: int, seed: int = 0, first_file: int = 0
) -> list[Path]:
    """Write `files` files of `books_per_file` books; the same arguments give identical bytes."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(first_file, first_file + files):
        lines = [
            synthetic_book_line(rng, number * books_per_file + position)
            for position in range(books_per_file)
        ]
        path = folder / f"books_{number:05d}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
