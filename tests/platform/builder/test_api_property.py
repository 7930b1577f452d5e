"""Property: whatever JSON (or bytes) is PUT to a pipeline, the answer is never a 500, and a
refused body leaves no trace (no new version, no rename)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.django_db, pytest.mark.services]

KINDS = ["source.documents", "vectorize.faiss", "serve.rag", "source.model", "quantize", "nope", ""]
PORTS = ["documents", "index", "model", "service", "dataset", "x"]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
node_ids = st.sampled_from(["docs", "index", "rag", "model", "a b", "", "x" * 70]) | st.integers()
nodes = st.fixed_dictionaries(
    {"id": node_ids, "kind": st.sampled_from(KINDS) | any_json},
    optional={
        "params": st.dictionaries(st.sampled_from(["collection", "chunk_size", "zz"]), any_json, max_size=3)
        | any_json,
        "position": st.lists(st.floats() | st.integers() | st.text(max_size=3), max_size=3),
        "label": any_json,
        "extra": any_json,
    },
)
edges = st.fixed_dictionaries(
    {
        "from": st.lists(node_ids | st.sampled_from(PORTS), max_size=3),
        "to": st.lists(node_ids | st.sampled_from(PORTS), max_size=3),
    }
)
graphs = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, "1"]) | any_json,
        "nodes": st.lists(nodes, max_size=5) | any_json,
        "edges": st.lists(edges, max_size=5) | any_json,
        "junk": any_json,
    },
)
bodies = (
    st.fixed_dictionaries(
        {"graph": graphs | any_json},
        optional={
            "name": st.text(max_size=130) | any_json,
            "message": st.text(max_size=210) | any_json,
            "description": any_json,
            "other": any_json,
        },
    )
    | graphs
    | any_json
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_put_random_json_never_500_and_never_half_saved(api, pipeline, body):
    pipeline.refresh_from_db()
    before = (pipeline.versions.count(), pipeline.name, pipeline.description)
    raw = json.dumps(body)
    response = api.put(f"/pipelines/{pipeline.pk}", raw=raw)
    assert response.status_code < 500, response.content[:500]
    pipeline.refresh_from_db()
    after = (pipeline.versions.count(), pipeline.name, pipeline.description)
    if response.status_code == 200:
        assert after[0] in (before[0], before[0] + 1)
        assert response.json()["number"] == pipeline.latest_version.number
    else:
        assert 400 <= response.status_code < 500
        assert response.json()["detail"]
        assert after == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_put_random_bytes_never_500(api, pipeline, raw):
    count = pipeline.versions.count()
    response = api.put(f"/pipelines/{pipeline.pk}", raw=raw)
    assert response.status_code < 500
    if response.status_code != 200:
        assert pipeline.versions.count() == count


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_validate_random_json_never_500(api, pipeline, body):
    response = api.post(f"/pipelines/{pipeline.pk}/validate", raw=json.dumps(body))
    assert response.status_code < 500, response.content[:500]
    assert pipeline.versions.count() == 1
