from pathlib import Path

import pytest

from book_pipeline.parsing import (
    MAX_LINE_CHARS,
    BookFileError,
    decode_book_bytes,
    parse_book_file,
    parse_book_text,
)

GOOD_LINE = (
    "7 ::: The Moonstone (1868) ::: Wilkie Collins ::: A cursed diamond: stolen, then found."
)


def test_parses_all_fields() -> None:
    [book] = parse_book_text(GOOD_LINE, "mysteries.txt")
    assert (book.index, book.title, book.year, book.author) == (
        7,
        "The Moonstone",
        1868,
        "Wilkie Collins",
    )
    assert book.description == "A cursed diamond: stolen, then found."
    assert (book.source_file, book.line_number) == ("mysteries.txt", 1)


def test_accepts_bom_crlf_blank_lines_and_loose_spacing() -> None:
    text = (
        "\ufeff1 ::: Dracula (1897) ::: Bram Stoker ::: A count moves to London.\r\n"
        "\r\n"
        "   \n"
        "2:::Emma (1815):::Jane Austen:::A matchmaker errs.\r\n"
        "3  :::   Title With (Parens) Inside (1999)  :::  Some One  :::  Ratio 1:2 holds.  \n"
    )
    books = parse_book_text(text, "mixed.txt")
    assert [book.index for book in books] == [1, 2, 3]
    assert [book.line_number for book in books] == [1, 4, 5]
    assert books[1].title == "Emma"
    assert books[2].title == "Title With (Parens) Inside"
    assert books[2].description == "Ratio 1:2 holds."


def test_unicode_text_is_kept() -> None:
    [book] = parse_book_text("1 ::: Мастер и Маргарита (1967) ::: Булгаков ::: Воланд ☾", "ru.txt")
    assert book.title == "Мастер и Маргарита"
    assert book.description.endswith("☾")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("1 ::: Emma (1815) ::: Jane Austen", 1, "expected 4 fields separated by ':::'"),
        (GOOD_LINE + " ::: extra", 1, "found 5"),
        ("x ::: Emma (1815) ::: Austen ::: Text", 1, "expected a whole number as the index"),
        ("1 ::: Emma ::: Austen ::: Text", 1, "expected '<Title> (<Year>)'"),
        ("1 ::: (1815) ::: Austen ::: Text", 1, "expected '<Title> (<Year>)'"),
        ("1 ::: Emma (1815) :::  ::: Text", 1, "the author is empty"),
        ("1 ::: Emma (1815) ::: Austen :::   ", 1, "the description is empty"),
        (GOOD_LINE + "\n\n" + GOOD_LINE, 3, "index 7 is already used on line 1"),
        ("\n\n   \n", None, "contains no book lines"),
        ("", None, "contains no book lines"),
    ],
)
def test_rejects_with_file_line_and_reason(text: str, line: int | None, expected: str) -> None:
    with pytest.raises(BookFileError) as caught:
        parse_book_text(text, "bad.txt")
    assert caught.value.file_name == "bad.txt"
    assert caught.value.line_number == line
    assert expected in str(caught.value)
    assert str(caught.value).startswith("bad.txt, line " if line else "bad.txt: ")


def test_rejects_overlong_line() -> None:
    long_line = "1 ::: T (2000) ::: A ::: " + "x" * MAX_LINE_CHARS
    with pytest.raises(BookFileError, match=r"line 2: line is [\d,]+ characters long"):
        parse_book_text(GOOD_LINE + "\n" + long_line, "long.txt")


def test_rejects_invalid_utf8_naming_the_line() -> None:
    data = (GOOD_LINE + "\n").encode() + "2 ::: Caf\u00e9 (2001) ::: A ::: B\n".encode("latin-1")
    with pytest.raises(BookFileError, match=r"latin\.txt, line 2: not valid UTF-8 \(byte 0xe9"):
        decode_book_bytes(data, "latin.txt")


def test_rejects_binary_content() -> None:
    with pytest.raises(BookFileError, match=r"image\.txt, line 3: binary content"):
        decode_book_bytes(b"\x89PNG\r\n\x1a\n\x00\x00", "image.txt")


def test_parse_book_file_hashes_content_and_leaves_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_bytes((GOOD_LINE + "\n").encode())
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    parsed = parse_book_file(path)
    assert parsed.file_name == "one.txt"
    assert len(parsed.sha256) == 64
    assert len(parsed.books) == 1
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_content_hash_changes_with_any_field() -> None:
    [book] = parse_book_text(GOOD_LINE, "a.txt")
    [edited] = parse_book_text(GOOD_LINE.replace("found", "lost"), "a.txt")
    [moved] = parse_book_text("\n" + GOOD_LINE, "a.txt")
    assert book.content_hash != edited.content_hash
    assert book.content_hash == moved.content_hash
