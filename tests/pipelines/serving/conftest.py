"""Session-wide tiny parts for the serving tests (built once: a few seconds)."""

from __future__ import annotations

import pytest

from tests.pipelines.serving import toys


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine more only contend."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def parts(tmp_path_factory):
    """{model, index, adapters: {name: folder}} built from scratch."""
    root = tmp_path_factory.mktemp("serving-parts")
    model = toys.build_model(root / "model")
    index = toys.build_index(root / "index")
    adapters = {
        name: toys.build_adapter(model, root / "adapters" / name, seed=seed)
        for seed, name in enumerate(toys.ADAPTERS, start=1)
    }
    return {"model": model, "index": index, "adapters": adapters, "root": root}


@pytest.fixture(scope="session")
def service_folders(parts, tmp_path_factory):
    root = tmp_path_factory.mktemp("services")
    common = {"model": parts["model"], "index": parts["index"]}
    return {
        "extractive": toys.build_service(root / "extractive", mode="extractive", top_k=2, **common),
        "generate": toys.build_service(root / "generate", mode="generate", top_k=2, max_tokens=24, **common),
        "lora": toys.build_service(
            root / "lora",
            mode="generate",
            top_k=2,
            max_tokens=12,
            temperature=0.0,
            adapters=parts["adapters"],
            descriptions=dict(toys.ADAPTERS),
            **common,
        ),
    }


@pytest.fixture(scope="session")
def services(service_folders):
    from pipelines.serving.service import RagService

    return {name: RagService.load(folder) for name, folder in service_folders.items()}
