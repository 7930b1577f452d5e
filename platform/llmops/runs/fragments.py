"""Run events as HTML for htmx's ws extension: out-of-band swaps of the run page's parts.

Each message starts with ``#run-last-event`` carrying the event as JSON (runs.js reads it for
the chart, the reconnect position and duplicate filtering); then, by event type:
progress -> the node's progress block (from the event itself, no query); log/failed -> a log
line appended to ``#run-log``; node state changes -> the node's timeline row (from the
database: durations, attempt, worker, retry button); run -> the page head; a finished node or
run -> the artifacts table.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from llmops.runs.models import NodeRun, PipelineRun
from llmops.runs.selectors import run_artifacts

TEMPLATE = "runs/run_detail.html"
NODE_STATE_EVENTS = frozenset({"queued", "started", "succeeded", "failed", "cancelled", "skipped", "cached"})
ARTIFACT_EVENTS = frozenset({"succeeded", "cached", "run"})


def _marker(event: dict[str, Any]) -> str:
    return (
        f'<div id="run-last-event" hx-swap-oob="true" hidden data-seq="{int(event["seq"])}" '
        f'data-event="{escape(json.dumps(event))}"></div>'
    )


def _progress(event: dict[str, Any]) -> str:
    node = SimpleNamespace(
        node_id=event["node"],
        progress=event.get("progress"),
        eta_s=event.get("eta_s"),
        message=event.get("message", ""),
        status=event.get("status", "running"),
    )
    return render_to_string(f"{TEMPLATE}#node-progress", {"node": node, "progress_oob": True})


def _log_line(event: dict[str, Any]) -> str:
    line = render_to_string(f"{TEMPLATE}#log-line", {"event": event})
    return f'<div id="run-log" hx-swap-oob="beforeend">{line}</div>'


def _node_row(run_id: int, node_id: str, can_edit: bool) -> str:
    node = NodeRun.objects.filter(run_id=run_id, node_id=node_id).select_related("cached_from").first()
    if node is None:
        return ""
    return render_to_string(f"{TEMPLATE}#node-row", {"node": node, "oob": True, "can_edit": can_edit})


def event_html(*, run_id: int, event: dict[str, Any], can_edit: bool) -> str:
    kind = event["type"]
    parts = [_marker(event)]
    if kind == "progress" and event.get("node"):
        parts.append(_progress(event))
    if kind == "log" or (kind == "failed" and event.get("message")):
        parts.append(_log_line(event))
    if kind in NODE_STATE_EVENTS and event.get("node"):
        parts.append(_node_row(run_id, event["node"], can_edit))
    if kind in ARTIFACT_EVENTS:
        run = PipelineRun.objects.select_related("pipeline", "version", "created_by", "workspace").get(
            pk=run_id
        )
        if kind == "run":
            parts.append(
                render_to_string(f"{TEMPLATE}#run-head", {"run": run, "oob": True, "can_edit": can_edit})
            )
        parts.append(
            render_to_string(
                f"{TEMPLATE}#run-artifacts", {"artifacts": list(run_artifacts(run=run)), "oob": True}
            )
        )
    return "".join(parts)
