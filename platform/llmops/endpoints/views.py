from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def index(request):
    return render(request, "core/section_empty.html", {
        "section": "endpoints",
        "title": "Endpoints",
        "empty_title": "Nothing published yet",
        "empty_text": "Finish a run that ends in a Publish API node, "
        "then press Publish to get a URL and a key.",
    })
