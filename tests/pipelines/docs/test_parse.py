"""Text extraction from real files made by the tests: structure kept, noise dropped."""

from __future__ import annotations

import pytest

from pipelines.docs import DocumentError, Parsed, parse
from tests.pipelines.docs.samples import (
    CSV,
    HTML,
    JSONL,
    MARKDOWN,
    make_corrupt_pdf,
    make_docx,
    make_encrypted_pdf,
    make_pdf,
)


def test_pdf_with_two_pages_keeps_page_offsets():
    parsed = parse(
        make_pdf(["Page one talks about cats.\nA second line.", "Page two is about dogs."], title="Pets"),
        "pdf",
    )
    assert "Page one talks about cats." in parsed.text and "Page two is about dogs." in parsed.text
    assert [n for _, n in parsed.pages] == [1, 2]
    assert parsed.page_at(parsed.text.index("dogs")) == 2
    assert parsed.page_at(parsed.text.index("cats")) == 1
    assert parsed.title == "Pets"


def test_pdf_hyphenation_at_line_end_is_repaired():
    parsed = parse(make_pdf(["The infor-\nmation is here."]), "pdf")
    assert "information is here" in parsed.text


def test_encrypted_pdf_is_a_clear_error():
    with pytest.raises(DocumentError, match="password"):
        parse(make_encrypted_pdf(["secret plans"]), "pdf")


def test_corrupt_pdf_is_a_clear_error():
    with pytest.raises(DocumentError, match="damaged"):
        parse(make_corrupt_pdf(), "pdf")


def test_pdf_without_text_says_so():
    with pytest.raises(DocumentError, match="no text layer"):
        parse(make_pdf([""]), "pdf")


def test_docx_headings_become_markdown_headings_and_tables_rows():
    data = make_docx([("Holidays", ["You get 25 days a year."]), ("Expenses", ["Submit receipts monthly."])])
    parsed = parse(data, "docx")
    assert "# Holidays\n\nYou get 25 days a year." in parsed.text
    assert "# Expenses" in parsed.text
    assert "Plan | Price\nTeam | 12 euros" in parsed.text
    assert parsed.title == "Handbook"


def test_corrupt_docx_is_a_clear_error():
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<not-closed")
    with pytest.raises(DocumentError, match="Word document is damaged"):
        parse(buffer.getvalue(), "docx")


def test_html_drops_scripts_styles_and_keeps_headings():
    parsed = parse(HTML.encode(), "html")
    assert "secretToken" not in parsed.text and "alert" not in parsed.text
    assert "console.log" not in parsed.text and "color: red" not in parsed.text
    assert "Enable JavaScript" not in parsed.text
    assert "# Payroll questions" in parsed.text
    assert "paid on the last working day of each month" in parsed.text
    assert "- Payslips are in the portal." in parsed.text
    assert parsed.title == "Payroll FAQ"


def test_markdown_is_kept_as_written():
    parsed = parse(MARKDOWN.encode(), "markdown")
    assert parsed.text.startswith("# Gardening guide")
    assert "## Watering tomatoes" in parsed.text


def test_csv_rows_become_records():
    parsed = parse(CSV.encode(), "csv")
    assert parsed.structure == "records"
    assert parsed.text.split("\n\n")[1] == "city: Lyon\ncountry: France\npopulation: 520000"


def test_jsonl_rows_become_records_and_bad_lines_are_reported():
    parsed = parse((JSONL + "{oops\n").encode(), "jsonl")
    assert parsed.text.split("\n\n")[0] == "question: Where is the office?\nanswer: In Lyon."
    assert parsed.warnings == ["Line 3 is not valid JSON and was skipped."]


def test_jsonl_without_any_valid_line_is_an_error():
    with pytest.raises(DocumentError, match="valid JSON"):
        parse(b"{nope\n[also nope\n", "jsonl")


def test_non_utf8_text_is_an_error():
    with pytest.raises(DocumentError, match="UTF-8"):
        parse("naïve".encode("latin-1"), "text")


def test_control_characters_and_blank_runs_are_cleaned():
    parsed = parse(b"one\x07 two\r\n\r\n\r\n\r\nthree   \n", "text")
    assert parsed.text == "one two\n\nthree"


def test_parsed_round_trips_through_json():
    parsed = parse(make_pdf(["a", "b"]), "pdf")
    assert Parsed.from_json(parsed.to_json()) == parsed
