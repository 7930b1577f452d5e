"""The demo-model builder and model-folder inspection (config.json + safetensors headers)."""

from __future__ import annotations

import json
import struct

import pytest

from pipelines.ml.demo import CHAT_TEMPLATE, DemoConfig, build_demo_model, is_built
from pipelines.ml.modelinfo import ModelFolderError, inspect_model_dir
from pipelines.nodes.source_model.spec import DEMO_MODEL_FACTS


def test_tiny_model_loads_through_the_hub_code_path_and_generates_words(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, use_safetensors=True, trust_remote_code=False
    )
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.chat_template == CHAT_TEMPLATE
    ids = tokenizer("The platform", return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(out[0], skip_special_tokens=True)
    assert text.startswith("The platform") and len(text.split()) >= 4
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<s><|user|>\nhi</s>\n<|assistant|>\n"


def test_building_again_is_a_no_op(tiny_model_dir):
    weights = tiny_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    info = build_demo_model(tiny_model_dir, DemoConfig(hidden_size=64, num_layers=1, num_heads=2))
    assert weights.stat().st_mtime_ns == before
    assert info["config"]["num_layers"] == 2 and is_built(tiny_model_dir)


def test_demo_shape_matches_what_the_spec_states():
    """The spec states the demo's size for the memory pre-flight without importing the builder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = DemoConfig()
    with torch.device("meta"):
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=config.vocab_size,
                hidden_size=config.hidden_size,
                intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                num_key_value_heads=config.num_heads,
                max_position_embeddings=config.max_position_embeddings,
                tie_word_embeddings=False,
            )
        )
    assert sum(p.numel() for p in model.parameters()) == DEMO_MODEL_FACTS.params
    assert (config.hidden_size, config.num_layers, config.vocab_size, config.max_position_embeddings) == (
        DEMO_MODEL_FACTS.hidden,
        DEMO_MODEL_FACTS.layers,
        DEMO_MODEL_FACTS.vocab,
        DEMO_MODEL_FACTS.context,
    )


def test_widths_must_suit_bitsandbytes_cpu_kernels():
    with pytest.raises(ValueError, match="multiple of 32"):
        DemoConfig(intermediate_size=100)


def test_inspect_reads_headers_without_loading(tiny_model_dir):
    from safetensors.torch import load_file

    info = inspect_model_dir(tiny_model_dir)
    tensors = load_file(tiny_model_dir / "model.safetensors")
    assert info.parameters == sum(t.numel() for t in tensors.values())
    assert (info.architecture, info.model_type, info.dtype) == ("LlamaForCausalLM", "llama", "float32")
    assert info.max_position_embeddings == 256 and info.has_tokenizer and info.has_chat_template
    assert info.projection_modules == [
        "down_proj",
        "gate_proj",
        "k_proj",
        "o_proj",
        "q_proj",
        "up_proj",
        "v_proj",
    ]


def _folder(tmp_path, **files):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp_path / name.replace("_dot_", ".")).write_bytes(data)
    return tmp_path


def test_inspect_refuses_what_it_cannot_load_safely(tmp_path):
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}).encode()
    with pytest.raises(ModelFolderError, match="no config.json"):
        inspect_model_dir(_folder(tmp_path / "a", weights_dot_safetensors=b""))
    with pytest.raises(ModelFolderError, match="pickle"):
        inspect_model_dir(_folder(tmp_path / "b", config_dot_json=config, pytorch_model_dot_bin=b"x"))
    with pytest.raises(ModelFolderError, match="header length"):
        huge = struct.pack("<Q", 2**40)
        inspect_model_dir(_folder(tmp_path / "c", config_dot_json=config, model_dot_safetensors=huge))
    with pytest.raises(ModelFolderError, match="not a folder"):
        inspect_model_dir(tmp_path / "missing")
