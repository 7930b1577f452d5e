from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def index(request):
    return render(request, "core/section_empty.html", {
        "section": "models",
        "title": "Models and datasets",
        "empty_title": "No models registered yet",
        "empty_text": "The bundled demo model is always available as \"demo\". Register a hub model "
        "or a local folder, or upload a dataset to fine-tune on.",
    })
