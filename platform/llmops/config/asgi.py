"""ASGI entry point: HTTP through Django, websockets through Channels (session-authenticated)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_root = Path(__file__).resolve().parents[3]
for _p in (str(_root / "platform"), str(_root)):
    if _p not in sys.path:
        sys.path.insert(0, _p)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from llmops.config.routing import websocket_urlpatterns  # noqa: E402
from llmops.endpoints.lane import with_serving_lane  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The key-authenticated inference API skips the site's middleware (endpoints/lane.py).
        "http": with_serving_lane(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
