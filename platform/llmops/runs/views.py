from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def index(request):
    return render(request, "core/section_empty.html", {
        "section": "runs",
        "title": "Runs",
        "empty_title": "No runs yet",
        "empty_text": "Open a pipeline and press Run; every run and its live progress appears here.",
    })
