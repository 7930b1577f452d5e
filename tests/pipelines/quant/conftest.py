"""A tiny real Llama (built by the demo builder with a small config) shared by the quant tests."""

from __future__ import annotations

import pytest

# Every projection width a multiple of 32 (bitsandbytes' CPU 4-bit kernels need it), and
# in_features of 64+ so per-row float32 scales stay under 0.5 bit per weight.
TINY = dict(
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    intermediate_size=128,
    vocab_size=384,
    max_position_embeddings=128,
    steps=40,
    seq_len=32,
    batch_size=8,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from pipelines.ml.demo import DemoConfig, build_demo_model

    folder = tmp_path_factory.mktemp("quant") / "tiny-llama"
    build_demo_model(folder, DemoConfig(**TINY))
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from pipelines.ml.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from pipelines.ml.loading import LoadOptions, load_model

    return load_model(tiny_model_dir, LoadOptions(device="cpu")).eval()
