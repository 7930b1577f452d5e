from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def index(request):
    return render(request, "core/section_empty.html", {
        "section": "pipelines",
        "title": "Pipelines",
        "empty_title": "Build your first pipeline",
        "empty_text": "Drag nodes onto a canvas — documents, a model, a trainer — wire them, and run.",
    })
