"""Demo content for ``manage.py seed_demo``: the two shipped sample datasets and, wired to them,
ready-to-run fine-tuning pipelines ("Text classification with LoRA" on the news headlines,
"Instruction-tune a chat model" on the platform conversations). Safe to run again."""

from __future__ import annotations

from llmops.builder.models import Pipeline
from llmops.builder.services import pipeline_create
from llmops.catalog.models import Dataset
from llmops.catalog.services import SAMPLES, dataset_create_sample
from pipelines.gallery import fill_sources, get_template

# sample dataset -> the gallery template that trains on it
PIPELINES = {"news": "text-classification-lora", "platform-chat": "instruction-tune-chat"}


def _sample_dataset(*, user, workspace, sample: str) -> Dataset:
    name = SAMPLES[sample][1]
    existing = Dataset.objects.filter(workspace=workspace, name=name).order_by("id").first()
    return existing or dataset_create_sample(user=user, workspace=workspace, sample=sample)


def seed_demo(*, user, workspace) -> str | None:
    created = []
    for sample, slug in PIPELINES.items():
        dataset = _sample_dataset(user=user, workspace=workspace, sample=sample)
        template = get_template(slug)
        name = f"{template['name']} (demo)"
        if Pipeline.objects.filter(workspace=workspace, name=name, deleted_at__isnull=True).exists():
            continue
        pipeline_create(
            workspace=workspace, user=user, name=name, description=template["description"],
            graph=fill_sources(template["graph"], dataset=dataset.id),
            message=f"Seeded from template “{template['name']}” with {dataset.name}",
        )
        created.append(name)
    return f"Ready to run: {', '.join(created)}" if created else None
