"""The serving lane: the key-authenticated inference routes skip the site's middleware.

``POST /api/v1/endpoints/<slug>/query``, ``POST /v1/chat/completions`` and ``GET /v1/models``
are called by programs with an endpoint key. Sessions, CSRF, messages, htmx and workspace
middleware do nothing for them, yet under ASGI each of those (Django's ``MiddlewareMixin``)
costs two hops to a thread and back per request, serialised per request on one thread: a few
milliseconds of every answer and a ceiling on concurrent requests. The ASGI application sends
these paths to a Django handler with no middleware; what still applies is done inline, without
a thread: the host check (ALLOWED_HOSTS), SecurityMiddleware's redirect and headers.

Everything else (pages, the management API, the playground, which uses the session) goes
through the full stack as before.
"""

from __future__ import annotations

import re

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.security import SecurityMiddleware

URLCONF = "llmops.endpoints.lane_urls"
PATHS = re.compile(r"^/(?:api/v1/endpoints/[^/]+/query|v1/chat/completions|v1/models(?:/[^/]+)?)$")


class ServingHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        # No ThreadSensitiveContext: it would make a thread for every request. The lane's views
        # do their database work on the serving pool (dbthreads.py); the little that Django
        # itself runs thread-sensitively (signal receivers, response.close) shares one thread.
        await self.handle(scope, receive, send)

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        security = SecurityMiddleware(lambda request: None)  # only its two hooks are used
        get_response = convert_exception_to_response(self._get_response_async)

        async def chain(request):
            request.urlconf = URLCONF
            request.get_host()  # raises DisallowedHost (400) for a host not in ALLOWED_HOSTS
            response = security.process_request(request)  # SECURE_SSL_REDIRECT
            if response is None:
                response = await get_response(request)
            return security.process_response(request, response)

        self._middleware_chain = convert_exception_to_response(chain)


def with_serving_lane(site):
    """Wrap the site's ASGI HTTP application: the inference paths go to the lane."""
    lane = ServingHandler()

    async def app(scope, receive, send):
        if scope["type"] == "http" and PATHS.match(scope.get("path", "")):
            await lane(scope, receive, send)
        else:
            await site(scope, receive, send)

    return app
