"""Chunk boundaries and overlap, counted in tokens; sections by headings or records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.docs import chunk_text, split_sections
from pipelines.docs.chunk import word_counter
from tests.pipelines.docs.samples import MARKDOWN


def test_chunks_never_cross_a_heading():
    chunks = chunk_text(MARKDOWN.strip(), chunk_size=200, overlap=10, token_counter=word_counter)
    assert [c.heading for c in chunks] == [
        "Gardening guide",
        "Gardening guide > Watering tomatoes",
        "Gardening guide > Pruning roses",
    ]
    assert chunks[1].text.startswith("## Watering tomatoes")
    assert "Prune" not in chunks[1].text


def test_a_heading_without_body_joins_the_next_section():
    text = "# Manual\n\n## Setup\n\nRun the installer.\n\n## Use\n\nClick start."
    sections = split_sections(text)
    assert [s.heading for s in sections] == ["Manual > Setup", "Manual > Use"]
    assert text[sections[0].start : sections[0].end].startswith("# Manual\n\n## Setup")


def test_hash_lines_in_code_blocks_are_not_headings():
    text = "# Script\n\n```bash\n# a comment\necho hi\n```\n\nAfter the code."
    assert [s.heading for s in split_sections(text)] == ["Script"]


def test_records_are_separate_chunks():
    text = "name: a\nvalue: 1\n\nname: b\nvalue: 2\n\nname: c\nvalue: 3"
    chunks = chunk_text(text, chunk_size=100, overlap=0, token_counter=word_counter, structure="records")
    assert [c.text for c in chunks] == ["name: a\nvalue: 1", "name: b\nvalue: 2", "name: c\nvalue: 3"]


def _long_text(words: int) -> str:
    return " ".join(f"w{i}." if i % 9 == 8 else f"w{i}" for i in range(words))


def test_size_limit_and_overlap_between_neighbours():
    text = _long_text(300)
    chunks = chunk_text(text, chunk_size=40, overlap=8, token_counter=word_counter)
    assert len(chunks) > 7
    for chunk in chunks:
        assert word_counter(chunk.text) <= 40
        assert text[chunk.start : chunk.end] == chunk.text
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert right.start < left.end, "neighbouring chunks share text"
        shared = text[right.start : left.end]
        assert 1 <= word_counter(shared) <= 20
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_no_overlap_means_a_partition():
    text = _long_text(120)
    chunks = chunk_text(text, chunk_size=25, overlap=0, token_counter=word_counter)
    covered = " ".join(c.text for c in chunks)
    assert covered.split() == text.split()


def test_paragraph_breaks_are_preferred_cut_points():
    paragraphs = [" ".join(f"p{p}w{i}" for i in range(12)) for p in range(6)]
    text = "\n\n".join(paragraphs)
    chunks = chunk_text(text, chunk_size=30, overlap=0, token_counter=word_counter)
    for chunk in chunks:
        # each chunk is whole paragraphs: it starts at a paragraph start and ends at a paragraph end
        assert chunk.text.split()[0].endswith("w0") and chunk.text.split()[-1].endswith("w11")


def test_tokenizer_counts_are_respected_with_a_real_tokenizer():
    from transformers import AutoTokenizer

    from pipelines.vectorstore.embed import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = (
        "Tokenization splits unfamiliar words like antidisestablishmentarianism into pieces. " * 40
    ).strip()
    chunks = chunk_text(text, chunk_size=64, overlap=8, token_counter=count)
    assert len(chunks) > 3
    assert all(count(c.text) <= 64 for c in chunks)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(alphabet="abc xyz.\n#", min_size=0, max_size=60), min_size=1, max_size=12),
    st.integers(min_value=4, max_value=30),
    st.integers(min_value=0, max_value=10),
)
def test_chunks_are_exact_slices_within_the_limit(parts, size, overlap):
    text = "\n\n".join(parts).strip()
    chunks = chunk_text(text, chunk_size=size, overlap=overlap, token_counter=word_counter)
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() == chunk.text and chunk.text
        assert word_counter(chunk.text) <= size
    # every word of the text is in some chunk
    in_chunks = set()
    for chunk in chunks:
        in_chunks.update(range(chunk.start, chunk.end))
    for i, ch in enumerate(text):
        assert ch.isspace() or i in in_chunks
