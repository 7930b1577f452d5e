"""On a CUDA device: QLoRA NF4 with bf16 compute, peak memory and NVML energy in the report."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    return "cuda"


def test_qlora_nf4_trains_on_the_gpu_and_evaluates(cuda, tmp_path, tiny_model_dir, make_ctx, ml):
    from pipelines.context import ArtifactRef
    from pipelines.ml.evaluation import evaluate
    from pipelines.ml.train import train
    from pipelines.nodes.evaluate.spec import EvaluateParams
    from pipelines.types import ArtifactType

    dataset = ml.dataset_ref(tmp_path / "data", ml.keyword_rows(), "classification", stratify="label")
    ctx = make_ctx(device=cuda)
    outputs = train(
        ctx,
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        params=ml.train_params(method="qlora", max_steps=80, batch_size="auto"),
    )
    data = outputs["report"].metadata["data"]
    assert data["method"] == "qlora" and data["compute_dtype"] in ("bf16", "fp16")
    assert data["final_loss"] < data["first_loss"]
    assert data["training"]["peak_memory_bytes"] > 0 and "trial step" in data["batch_size_reason"]
    adapter = ArtifactRef(ArtifactType.ADAPTER, outputs["adapter"].path, outputs["adapter"].metadata)
    report = evaluate(
        make_ctx(device=cuda),
        model_ref=ml.model_ref(tiny_model_dir),
        dataset_ref=dataset,
        adapter_ref=adapter,
        params=EvaluateParams(metrics=["accuracy"]),
    )["report"].metadata
    comparison = report["data"]["comparison"]["accuracy"]
    assert comparison["adapter"] > comparison["baseline"]
    assert report["data"]["variants"]["adapter"]["energy_source"]
