from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from llmops.accounts.selectors import api_tokens_for_user


@require_GET
@login_required
def settings_page(request):
    return render(request, "accounts/settings.html", {
        "section": "settings",
        "title": "Settings",
        "tokens": api_tokens_for_user(user=request.user),
    })
