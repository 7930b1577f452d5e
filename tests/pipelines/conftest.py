"""Fixtures for the pure pipeline tests."""

from __future__ import annotations

import pytest

from pipelines.gallery import TEMPLATES, fill_sources, get_template


@pytest.fixture
def qa_graph() -> dict:
    """documents -> vectorize -> serve.rag <- model, serve.rag -> publish.api; valid."""
    return fill_sources(get_template("qa-over-documents")["graph"], collection=1)


@pytest.fixture(params=[t["slug"] for t in TEMPLATES])
def template(request) -> dict:
    return get_template(request.param)
