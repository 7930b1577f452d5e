"""Live platform health for signed-in users: the /healthz report, pushed every few seconds."""

from __future__ import annotations

import asyncio
import contextlib

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from llmops.core.health import health_report

# Application close codes (4000-4999): 4401 mirrors HTTP 401 so a client knows to sign in.
CLOSE_UNAUTHENTICATED = 4401
PUSH_INTERVAL_S = 5.0


class HealthConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        # Accept, then close: a close before accept is an HTTP 403 handshake failure and the
        # browser would only ever see code 1006, never the reason.
        await self.accept()
        if not self._signed_in():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.pusher = asyncio.ensure_future(self._push_forever())

    async def disconnect(self, code):
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # Any message asks for a fresh report now (a "refresh" button); its content is ignored,
        # and a request while a probe is running is dropped so a chatty client costs nothing.
        if self._signed_in() and not self.probing:
            await self._send_report()

    probing = False

    def _signed_in(self) -> bool:
        user = self.scope.get("user")
        return user is not None and user.is_authenticated

    async def _send_report(self):
        self.probing = True
        try:
            report = await sync_to_async(health_report, thread_sensitive=False)()
        finally:
            self.probing = False
        await self.send_json({"type": "health", **report})

    async def _push_forever(self):
        while True:
            await self._send_report()
            await asyncio.sleep(PUSH_INTERVAL_S)
