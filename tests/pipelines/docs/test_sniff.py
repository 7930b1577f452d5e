"""Type sniffing: the content decides, the name only breaks ties; clear refusals."""

from __future__ import annotations

import pytest

from pipelines.docs import DocumentError, sniff
from pipelines.docs.sniff import display_name
from tests.pipelines.docs.samples import CSV, HTML, JSONL, MARKDOWN, make_corrupt_pdf, make_docx, make_pdf


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("report.pdf", make_pdf(["hello"]), "pdf"),
        ("handbook.docx", make_docx([("Intro", ["Hi."])]), "docx"),
        ("page.html", HTML.encode(), "html"),
        ("page.txt", HTML.encode(), "html"),  # a doctype is HTML whatever the name
        ("guide.md", MARKDOWN.encode(), "markdown"),
        ("notes", MARKDOWN.encode(), "markdown"),  # no extension: headings make it Markdown
        ("cities.csv", CSV.encode(), "csv"),
        ("qa.jsonl", JSONL.encode(), "jsonl"),
        ("qa.txt", JSONL.encode(), "jsonl"),
        ("plain.txt", "Just a note, in UTF-8: café.".encode(), "text"),
        ("bom.txt", b"\xef\xbb\xbfwith a byte-order mark", "text"),
        ("utf16.txt", "UTF-16 text".encode("utf-16"), "text"),
        ("MZ.txt", b"MZ is the name of our hotel", "text"),  # a binary signature inside real text
    ],
)
def test_kind_comes_from_content(name, data, kind):
    assert sniff(data, name).kind == kind


def test_a_pdf_named_txt_is_a_pdf_with_a_note():
    found = sniff(make_pdf(["x"]), "notes.txt")
    assert found.kind == "pdf"
    assert "notes.txt" in found.note and "PDF" in found.note


def test_fake_pdf_extension_is_read_as_text_with_a_note():
    found = sniff(b"This is not a PDF at all, just words.", "invoice.pdf")
    assert found.kind == "text"
    assert found.content_type == "text/plain"
    assert "invoice.pdf" in found.note and "plain text" in found.note


def test_a_damaged_pdf_is_still_sniffed_as_pdf():
    # sniffing says what it is; parsing says it cannot be read
    assert sniff(make_corrupt_pdf(), "x.pdf").kind == "pdf"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        ("café crème".encode("latin-1"), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old Office"),
        (b"{\\rtf1\\ansi hello}", "RTF"),
        (b"abc\x00\x01\x02def", "binary"),
    ],
)
def test_refusals_say_what_is_wrong(data, words):
    with pytest.raises(DocumentError, match=words):
        sniff(data, "file.txt")


def test_zip_that_is_not_word_is_refused():
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(DocumentError, match="Excel"):
        sniff(buffer.getvalue(), "sheet.docx")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("bad\x00name\x07.txt", "badname.txt"),
        ("", "document"),
        ("..", "document"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_display_name_is_only_a_base_name(given, shown):
    assert display_name(given) == shown
