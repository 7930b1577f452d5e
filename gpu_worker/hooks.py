"""What happens after a node succeeds, beyond storing its artifacts: the platform app that owns
an output kind registers it, so it shows up outside the run (a `vectorize.faiss` index becomes a
version of its collection's index on the Knowledge page and in the search API).

Each hook is ``fn(*, node: NodeRun, artifacts: dict[port, Artifact]) -> None`` and must be safe to
call twice (a redelivered task). A hook that fails leaves the node succeeded and logs the reason on
the run page: the artifact is stored and the user can retry the node.
"""

from __future__ import annotations

import logging

from llmops.runs import engine
from llmops.runs.models import Artifact, NodeRun
from llmops.runs.storage import materialise

log = logging.getLogger(__name__)


def _register_vector_index(*, node: NodeRun, artifacts: dict[str, Artifact]) -> None:
    from llmops.knowledge.indexing import index_register_from_artifact

    artifact = artifacts.get("index")
    if artifact is None:
        return
    index = index_register_from_artifact(
        workspace_id=node.run.workspace_id,
        path=materialise(artifact),
        metadata=artifact.metadata,
        artifact_key=artifact.key,
    )
    engine.node_note(node=node, type="log", level="info", message=f"Search index “{index}” updated.")


SUCCESS_HOOKS = {
    "vectorize.faiss": _register_vector_index,
}


def after_success(*, node: NodeRun, output_ids: dict[str, int]) -> None:
    hook = SUCCESS_HOOKS.get(node.kind)
    if hook is None:
        return
    artifacts = Artifact.objects.in_bulk(list(output_ids.values()))
    by_port = {port: artifacts[pk] for port, pk in output_ids.items() if pk in artifacts}
    try:
        hook(node=node, artifacts=by_port)
    except Exception as exc:  # noqa: BLE001 - the node's own work is done and stored
        log.exception("after-success hook of %s failed", node.kind)
        engine.node_note(
            node=node, type="log", level="error",
            message=f"Stored, but registering the output failed: {type(exc).__name__}: {exc}"[:2000],
        )
