"""The real ASGI application under the test URLconf (see live_urls.py), for daphne."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[3]
for _p in (str(_root / "platform"), str(_root)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.config.settings")

from django.conf import settings  # noqa: E402

settings.ROOT_URLCONF = "tests.platform.endpoints.live_urls"

from llmops.config.asgi import application  # noqa: E402, F401
