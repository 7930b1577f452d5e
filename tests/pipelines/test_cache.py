"""Content keys (pipelines.cache): stable, and sensitive to exactly what outputs depend on."""

from __future__ import annotations

from pipelines.cache import content_hash, content_output_key, node_key, output_key

BASE = {
    "kind": "train.lora",
    "version": 1,
    "params": {"r": 8, "lr": 2e-4},
    "inputs": {"model": ["m1"], "data": ["d1"]},
}


def test_key_is_stable_and_order_insensitive_for_dicts():
    assert node_key(**BASE) == node_key(
        **{**BASE, "params": {"lr": 2e-4, "r": 8}, "inputs": {"data": ["d1"], "model": ["m1"]}}
    )
    assert len(node_key(**BASE)) == 64


def test_key_changes_with_each_ingredient():
    keys = {
        node_key(**BASE),
        node_key(**{**BASE, "kind": "train.full"}),
        node_key(**{**BASE, "version": 2}),
        node_key(**{**BASE, "params": {"r": 16, "lr": 2e-4}}),
        node_key(**{**BASE, "inputs": {"model": ["m2"], "data": ["d1"]}}),
        node_key(**{**BASE, "inputs": {"model": ["m1"], "data": ["d1", "d2"]}}),
        node_key(**{**BASE, "inputs": {"model": ["m1"], "data": ["d2", "d1"]}}),
    }
    assert len(keys) == 7
    # Edge order matters for a port with several inputs (adapters are applied in order).
    assert node_key(**{**BASE, "inputs": {"a": ["x", "y"]}}) != node_key(
        **{**BASE, "inputs": {"a": ["y", "x"]}}
    )


def test_output_keys_are_per_port_and_namespace():
    key = node_key(**BASE)
    assert output_key(namespace="ws1", node_key=key, port="adapter") != output_key(
        namespace="ws1", node_key=key, port="report"
    )
    assert output_key(namespace="ws1", node_key=key, port="adapter") != output_key(
        namespace="ws2", node_key=key, port="adapter"
    )
    assert content_output_key(
        namespace="ws1", port="p", content_sha256="a", metadata={}
    ) != content_output_key(namespace="ws1", port="p", content_sha256="a", metadata={"rows": 3})


def test_content_hash_of_files_and_folders(tmp_path):
    one = tmp_path / "one"
    (one / "sub").mkdir(parents=True)
    (one / "a.txt").write_text("ab")
    (one / "sub" / "b.txt").write_text("c")
    two = tmp_path / "two"
    (two / "sub").mkdir(parents=True)
    (two / "a.txt").write_text("a")
    (two / "sub" / "b.txt").write_text("bc")  # same bytes overall, different files
    sha1, size1 = content_hash(one)
    sha2, size2 = content_hash(two)
    assert size1 == size2 == 3 and sha1 != sha2
    assert content_hash(one) == (sha1, size1)
    (one / "sub" / "b.txt").rename(one / "sub" / "renamed.txt")
    assert content_hash(one)[0] != sha1  # names are part of the content
    assert content_hash(None)[1] == 0
    assert content_hash(one / "a.txt")[1] == 2
