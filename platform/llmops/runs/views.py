"""Pages: the runs list, a run (live over /ws/runs/<id>/), the Workers page, downloads.

Partials (htmx) and full pages share templates: a partial URL opened directly renders the
whole page.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from llmops.accounts.models import Role
from llmops.accounts.selectors import user_can
from llmops.runs import reports, selectors, services, storage
from llmops.runs.models import RunStatus

LIST_LIMIT = 100


def _partial(request, template: str, name: str) -> str:
    return f"{template}#{name}" if getattr(request, "htmx", False) else template


@require_GET
@login_required
def index(request):
    status = request.GET.get("status") or None
    if status not in RunStatus.values:
        status = None
    runs = list(
        selectors.run_list(user=request.user, workspace=request.workspace, status=status)[:LIST_LIMIT]
    )
    return render(
        request,
        _partial(request, "runs/index.html", "run-list"),
        {
            "section": "runs",
            "title": "Runs",
            "runs": runs,
            "status": status,
            "statuses": RunStatus.choices,
            "any_active": any(r.is_active for r in runs),
        },
    )


def run_context(*, run, user) -> dict:
    nodes = list(selectors.node_runs(run=run).select_related("cached_from"))
    waiting = {n.queue for n in nodes if n.status == "queued"}
    return {
        "run": run,
        "nodes": nodes,
        "missing_queues": sorted(waiting - selectors.live_queues()) if waiting else [],
        "log": selectors.log_tail(run=run),
        "metrics": selectors.metric_points(run=run),
        "artifacts": list(selectors.run_artifacts(run=run)),
        "can_edit": user_can(user=user, workspace=run.workspace, role=Role.EDITOR),
        **_reports_context(run=run),
    }


def _reports_context(*, run) -> dict:
    found = reports.run_reports(run=run)
    return {"reports": found, "comparison": reports.run_comparison(run=run, reports=found)}


@require_GET
@login_required
def detail(request, run_id: int):
    run = selectors.run_get(user=request.user, run_id=run_id)
    context = run_context(run=run, user=request.user)
    context.update({"section": "runs", "title": f"Run #{run.pk}"})
    return render(request, "runs/run_detail.html", context)


@require_GET
@login_required
def run_reports(request, run_id: int):
    """The reports section of the run page (an htmx partial that also works as a page)."""
    run = selectors.run_get(user=request.user, run_id=run_id)
    context = {"run": run, "section": "runs", "title": f"Reports of run #{run.pk}"}
    context.update(_reports_context(run=run))
    return render(request, "runs/_reports.html" if request.htmx else "runs/reports_page.html", context)


def _after_action(request, run_id: int):
    if getattr(request, "htmx", False):
        return HttpResponse(status=204)  # the page updates itself from the run's events
    return redirect("runs:detail", run_id=run_id)


@require_POST
@login_required
def cancel(request, run_id: int):
    run = selectors.run_get(user=request.user, run_id=run_id)
    try:
        services.run_cancel(user=request.user, run=run)
    except services.RunError as exc:
        messages.error(request, exc.message)
    return _after_action(request, run.pk)


@require_POST
@login_required
def retry(request, run_id: int, node_id: str):
    run = selectors.run_get(user=request.user, run_id=run_id)
    try:
        services.node_retry(user=request.user, run=run, node_id=node_id)
    except services.RunError as exc:
        if getattr(request, "htmx", False):
            return HttpResponse(exc.message, status=exc.status)
        messages.error(request, exc.message)
    return _after_action(request, run.pk)


@require_GET
@login_required
def workers(request):
    items = selectors.worker_list()
    coverage = selectors.queue_coverage(items)
    visible = set(
        selectors.run_list(user=request.user)
        .filter(pk__in={n.run_id for item in items for n in item["nodes"]})
        .values_list("pk", flat=True)
    )
    return render(
        request,
        _partial(request, "runs/workers.html", "workers"),
        {
            "section": "runs",
            "title": "Workers",
            "workers": items,
            "coverage": coverage,
            "missing": [q for q, names in coverage.items() if not names],
            "visible_runs": visible,
        },
    )


@require_GET
@login_required
def artifact_download(request, artifact_id: int):
    artifact = selectors.artifact_get(user=request.user, artifact_id=artifact_id)
    return storage.download_response(artifact)
