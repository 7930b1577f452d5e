"""The issue's "done when": dataset + demo model -> LoRA train -> evaluate, run by the engine on
a real Celery worker, with the loss curve as metric events and the adapter beating the baseline.

The worker builds the demo model itself (source.model "demo" when it is missing), here with
few pre-training steps (LLMOPS_DEMO_STEPS) so the test stays short: same shape, less fluent.
The task is one the base model cannot solve: the label is named by a keyword hidden among
filler words (the shipped news dataset needs the fully pre-trained demo model and more steps).
"""

from __future__ import annotations

import csv
import io
import random
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

pytestmark = [pytest.mark.django_db(transaction=True)]


def keyword_csv(n_per_label: int = 24, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    filler = [
        "the",
        "model",
        "reads",
        "a",
        "short",
        "note",
        "about",
        "data",
        "and",
        "training",
        "on",
        "a",
        "device",
    ]
    keywords = {"alpha": ["red", "apple", "fire"], "beta": ["blue", "ocean", "ice"]}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    for label, words in keywords.items():
        for _ in range(n_per_label):
            text = rng.sample(filler, 5)
            text.insert(rng.randrange(len(text) + 1), rng.choice(words))
            writer.writerow([" ".join(text), label])
    return out.getvalue().encode()


def node(id_: str, kind: str, params: dict, x: int) -> dict:
    return {"id": id_, "kind": kind, "params": params, "position": [x, 0]}


def graph(dataset_id: int) -> dict:
    tune = {
        "learning_rate": 3e-3,
        "max_steps": 120,
        "batch_size": 8,
        "max_seq_length": 64,
        "max_grad_norm": 1.0,
        "warmup_ratio": 0.0,
        "logging_steps": 5,
    }
    return {
        "version": 1,
        "nodes": [
            node("data", "source.dataset", {"dataset": dataset_id, "validation_split": 0.25}, 0),
            node("base", "source.model", {"model": "demo"}, 0),
            node("tune", "train.lora", tune, 300),
            node("eval", "evaluate", {"metrics": ["accuracy", "perplexity"]}, 600),
        ],
        "edges": [
            {"from": ["data", "dataset"], "to": ["tune", "dataset"]},
            {"from": ["base", "model"], "to": ["tune", "model"]},
            {"from": ["data", "dataset"], "to": ["eval", "dataset"]},
            {"from": ["base", "model"], "to": ["eval", "model"]},
            {"from": ["tune", "adapter"], "to": ["eval", "adapter"]},
        ],
    }


def test_dataset_and_demo_model_to_lora_to_evaluate(user, start_worker, tmp_path, settings):
    from llmops.builder.services import pipeline_create
    from llmops.catalog import services
    from llmops.runs.selectors import events_after
    from llmops.runs.services import run_start
    from tests.conftest import worker_env

    models = tmp_path / "models"
    settings.LLMOPS_MODELS_DIR, settings.LLMOPS_DEMO_MODEL_DIR = models, models / "demo"
    workspace = user.workspaces.first()
    upload = SimpleUploadedFile("keywords.csv", keyword_csv())
    dataset = services.dataset_upload(user=user, workspace=workspace, upload=upload)
    env = worker_env(
        LLMOPS_MODELS_DIR=str(models), LLMOPS_DEMO_STEPS="100", LLMOPS_MEDIA_ROOT=settings.MEDIA_ROOT
    )
    start_worker("cpu,gpu", name="finetune", env=env)
    pipeline = pipeline_create(workspace=workspace, user=user, name="keywords", graph=graph(dataset.pk))
    run = run_start(user=user, pipeline=pipeline)
    deadline = time.monotonic() + 240
    while run.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.5)
        run.refresh_from_db()
    nodes = {n.node_id: (n.status, n.error[:300]) for n in run.node_runs.all()}
    assert run.status == "succeeded", nodes

    events = events_after(run_id=run.pk, after=0)
    loss_points = [e for e in events if e.get("node") == "tune" and "loss" in (e.get("metrics") or {})]
    assert len(loss_points) >= 3  # the live loss curve, point by point
    training = _report(run, "tune")["data"]
    assert training["trainable_parameters"] == 65_536  # r=16 on q, k, v, o of the 4-layer, 128-wide demo
    assert training["final_loss"] < training["first_loss"]
    report = _report(run, "eval")
    comparison = report["data"]["comparison"]["accuracy"]
    assert comparison["adapter"] > comparison["baseline"], report["summary"]
    assert report["notes"][0].startswith("Baseline accuracy: ")

    # The same reports through the REST API and on the run page.
    from django.test import Client

    client = Client()
    client.force_login(user)
    body = client.get(f"/api/v1/runs/{run.pk}/report").json()
    assert [r["node"] for r in body["reports"]] == ["tune", "eval"]
    assert body["reports"][1]["summary"] and body["reports"][0]["charts"][0]["series"][0]["data"]
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Evaluation report" in page and "Fine-tuning report" in page


def _report(run, node_id: str) -> dict:
    from llmops.runs.models import Artifact, NodeRun

    node_run = NodeRun.objects.get(run=run, node_id=node_id)
    return Artifact.objects.get(pk=node_run.outputs["report"]).metadata
