import re
from pathlib import Path

import pytest

from book_pipeline.core.books.files import is_book_file_name, list_book_files, mapping_key_for

DAGSTER_MAPPING_KEY = re.compile(r"^[A-Za-z0-9_]+$")


@pytest.mark.parametrize(
    "names",
    [
        ("a b.txt", "a_b.txt", "a-b.txt", "a.b.txt"),
        ("Öl & Wasser.txt", "ol wasser.txt", "Ol_Wasser.txt"),
        ("书.txt", "本.txt", "📚.txt", ".txt"),
        ("x" * 200 + "1.txt", "x" * 200 + "2.txt"),
    ],
)
def test_mapping_keys_are_valid_readable_and_unique(names: tuple[str, ...]) -> None:
    keys = [mapping_key_for(name) for name in names]

    assert all(DAGSTER_MAPPING_KEY.match(key) for key in keys)
    assert len(set(keys)) == len(names)
    assert mapping_key_for("a b.txt").startswith("a_b_")
    assert keys == [mapping_key_for(name) for name in names]  # deterministic


@pytest.mark.parametrize(
    ("name", "is_book_file"),
    [
        ("fantasy.txt", True),
        ("with space.txt", True),
        (".hidden.txt", False),
        ("upload.txt.part", False),
        ("upload.txt.tmp", False),
        ("backup.txt~", False),
        ("notes.md", False),
        ("TXT", False),
    ],
)
def test_which_names_are_description_files(name: str, is_book_file: bool) -> None:
    assert is_book_file_name(name) is is_book_file


def test_listing_is_sorted_and_skips_folders(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.md", ".d.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "folder.txt").mkdir()

    assert [path.name for path in list_book_files(tmp_path)] == ["a.txt", "b.txt"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="books folder does not exist"):
        list_book_files(tmp_path / "nowhere")
