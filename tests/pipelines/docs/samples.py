"""Real document files made in memory for the tests: PDF (hand-written, two pages), encrypted and
damaged PDFs, a DOCX with headings (python-docx), Markdown, HTML with a script, CSV, JSONL.

Imported as ``tests.pipelines.docs.samples`` by the docs, vectorstore and knowledge tests.
"""

from __future__ import annotations

import io


def _pdf_escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str], title: str = "") -> bytes:
    """A minimal valid PDF: one Helvetica text page per string (lines split on "\\n")."""
    n = len(pages)
    page_ids = [4 + 2 * i for i in range(n)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {n} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, text in zip(page_ids, pages, strict=True):
        shown = " T* ".join(f"({_pdf_escape(line)}) Tj" for line in text.split("\n"))
        stream = f"BT /F1 11 Tf 14 TL 72 740 Td {shown} ET".encode("latin-1")
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    info_id = None
    if title:
        info_id = max(objects) + 1
        objects[info_id] = f"<< /Title ({_pdf_escape(title)}) >>".encode("latin-1")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = out.tell()
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, objects[number]))
    xref = out.tell()
    size = max(objects) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for number in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[number])
    info = b" /Info %d 0 R" % info_id if info_id else b""
    out.write(b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (size, info, xref))
    return out.getvalue()


def make_encrypted_pdf(pages: list[str], password: str = "s3cret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_corrupt_pdf() -> bytes:
    # A real PDF header followed by bytes that are not PDF objects and no cross-reference table.
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n" + bytes(range(256)) * 8


def make_docx(sections: list[tuple[str, list[str]]], title: str = "Handbook") -> bytes:
    """A Word document: a title, then a Heading 1 per section with its paragraphs."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Plan", "Price"
    table.cell(1, 0).text, table.cell(1, 1).text = "Team", "12 euros"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


MARKDOWN = """# Gardening guide

Intro text about the garden.

## Watering tomatoes

Water tomato plants deeply twice a week, in the early morning, so the roots grow down.

## Pruning roses

Prune roses in late winter, cutting just above an outward-facing bud.
"""

HTML = """<!doctype html>
<html><head><title>Payroll FAQ</title><style>body { color: red; }</style>
<script>var secretToken = "do-not-index"; alert("x");</script></head>
<body><nav>Home | About</nav>
<h1>Payroll questions</h1>
<p>Salaries are paid on the <b>last working day</b> of each month.</p>
<ul><li>Payslips are in the portal.</li><li>Expenses go through the form.</li></ul>
<noscript>Enable JavaScript</noscript>
<script type="module">console.log("also dropped")</script>
</body></html>
"""

CSV = "city,country,population\nParis,France,2100000\nLyon,France,520000\nBerlin,Germany,3600000\n"

JSONL = (
    '{"question": "Where is the office?", "answer": "In Lyon."}\n'
    '{"question": "Opening hours?", "answer": "9 to 5."}\n'
)
