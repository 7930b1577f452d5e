from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def index(request):
    return render(request, "core/section_empty.html", {
        "section": "knowledge",
        "title": "Knowledge",
        "empty_title": "No document collections yet",
        "empty_text": "Create a collection and drop PDFs, Word, Markdown or "
        "text files on it to make them searchable.",
    })
