from pathlib import Path

import pytest

from book_pipeline.core.books.parsing import (
    MAX_LINE_CHARS,
    BookFileError,
    decode_book_bytes,
    format_book_line,
    format_year,
    parse_book_file,
    parse_book_text,
    parse_year,
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


@pytest.mark.parametrize(
    ("written", "year"),
    [
        ("1815", 1815),
        ("0815", 815),
        ("9", 9),
        ("9999", 9999),
        ("1066 AD", 1066),
        ("1066 CE", 1066),
        ("-500", -500),
        ("-0500", -500),
        ("500 BC", -500),
        ("500 BCE", -500),
        ("1 BC", -1),
        ("-9999", -9999),
    ],
)
def test_years_before_and_in_the_common_era(written: str, year: int) -> None:
    [book] = parse_book_text(f"8 ::: The Art of War ({written}) ::: Sun Tzu ::: Strategy.", "a.txt")
    assert (book.title, book.year) == ("The Art of War", year)
    assert parse_year(written) == year


@pytest.mark.parametrize(
    "written",
    ["500 B.C.", "500 bc", "500BC", "500  BC", "-500 BC", "AD 1066", "c. 1850", "1815 ", "10000"],
)
def test_what_is_not_a_year_is_refused_saying_what_a_year_is(written: str) -> None:
    line = f"8 ::: The Art of War ({written}) ::: Sun Tzu ::: Strategy."
    with pytest.raises(BookFileError) as caught:
        parse_book_text(line, "bad.txt")
    assert str(caught.value) == (
        f"bad.txt, line 1: expected '<Title> (<Year>)' (second field), found "
        f"'The Art of War ({written})'; a year is 1 to 4 digits, as 1815, 1066 AD or 1066 CE, "
        "and before AD 1 as -500, 500 BC or 500 BCE; there is no year 0"
    )
    with pytest.raises(ValueError, match="a year is 1 to 4 digits"):
        parse_year(written)


@pytest.mark.parametrize("written", ["0", "0000", "-0", "0 BC", "0 BCE", "0 AD", "0 CE"])
def test_there_is_no_year_zero(written: str) -> None:
    with pytest.raises(BookFileError) as caught:
        parse_book_text(f"1 ::: Nothing ({written}) ::: Nobody ::: Never written.", "zero.txt")
    assert str(caught.value) == (
        f"zero.txt, line 1: expected a year in '<Title> (<Year>)' (second field), found "
        f"'Nothing ({written})'; there is no year 0 (1 BC is followed by AD 1: write -1 or 1)"
    )


def test_years_are_shown_with_their_era_before_ad_1() -> None:
    assert [format_year(year) for year in (-500, -1, 1, 180, 1815)] == [
        "500 BC",
        "1 BC",
        "1",
        "180",
        "1815",
    ]


def test_a_year_before_ad_1_is_one_book_however_it_is_written() -> None:
    """The same book with `(-500)` or `(500 BC)` is unchanged: same hash, nothing re-embedded."""
    [negative] = parse_book_text("8 ::: The Art of War (-500) ::: Sun Tzu ::: S.", "a.txt")
    [era] = parse_book_text("8 ::: The Art of War (500 BC) ::: Sun Tzu ::: S.", "a.txt")
    assert negative == era and negative.content_hash == era.content_hash
    [written_back] = parse_book_text(
        format_book_line(8, "The Art of War", -500, "Sun Tzu", "S."), "a.txt"
    )
    assert written_back == negative
