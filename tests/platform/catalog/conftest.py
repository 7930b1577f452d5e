"""Fixtures for the catalog: a private media folder and model root, a model folder on disk,
API clients. The web process never loads torch, so the model folder here is written by hand:
a config.json and a real safetensors file (header + zero bytes)."""

from __future__ import annotations

import json
import struct

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile


@pytest.fixture(autouse=True)
def catalog_dirs(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.LLMOPS_MODELS_DIR = tmp_path / "models"
    settings.LLMOPS_DEMO_MODEL_DIR = tmp_path / "models" / "demo"
    settings.LLMOPS_MODEL_ROOTS = [(tmp_path / "models").resolve()]
    return tmp_path


def write_safetensors(path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    sizes = {"F32": 4, "BF16": 2, "F16": 2}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


@pytest.fixture
def model_folder(catalog_dirs):
    """A 2-layer Llama-shaped folder: 8-wide, bf16."""
    folder = catalog_dirs / "models" / "small-llama"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "vocab_size": 16,
                "max_position_embeddings": 64,
            }
        )
    )
    tensors = {"model.embed_tokens.weight": ("BF16", [16, 8]), "lm_head.weight": ("BF16", [16, 8])}
    for layer in range(2):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[f"model.layers.{layer}.self_attn.{proj}.weight"] = ("BF16", [8, 8])
        tensors[f"model.layers.{layer}.input_layernorm.weight"] = ("BF16", [8])
    write_safetensors(folder / "model.safetensors", tensors)
    (folder / "tokenizer.json").write_text("{}")
    return folder


class Api:
    def __init__(self, client, token: str):
        self.client, self.headers = client, {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, path: str):
        return self.client.get("/api/v1" + path, **self.headers)

    def post(self, path: str, body=None):
        return self.client.post(
            "/api/v1" + path, data=json.dumps(body or {}), content_type="application/json", **self.headers
        )

    def upload(self, path: str, filename: str, content: bytes, **fields):
        return self.client.post(
            "/api/v1" + path, data={"file": SimpleUploadedFile(filename, content), **fields}, **self.headers
        )

    def delete(self, path: str):
        return self.client.delete("/api/v1" + path, **self.headers)


@pytest.fixture
def api(client, api_token):
    return Api(client, api_token)


@pytest.fixture
def other_api(client, other_user):
    from llmops.accounts.services import api_token_create

    _, secret = api_token_create(user=other_user, name="other")
    return Api(client, secret)


INSTRUCTIONS = (
    b'{"instruction": "Say hi", "input": "", "output": "hi"}\n'
    b'{"instruction": "broken"\n'
    b'{"instruction": "Count", "input": "1 2", "output": ""}\n'
    b'{"instruction": "Name a colour", "output": "red"}\n'
)
