"""Live run events at /ws/runs/{id}/?after=N&format=json|html.

On connect: check the user may see the run (member of its workspace), join the run's group,
replay stored events after ``after``, then stream. Every event is sent at most once and in
sequence order: ``last`` is the highest seq sent; a live event that skips ahead (two workers
publishing at once can arrive out of order) triggers a catch-up from the database, which is
complete up to that event (see events.py), and an event at or below ``last`` is dropped.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from llmops.runs.events import group_name

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CATCH_UP_PAGE = 500


def _query(scope) -> tuple[int, str]:
    params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    raw_after = (params.get("after") or ["0"])[0]
    after = int(raw_after) if raw_after.isdigit() else 0
    fmt = "json" if (params.get("format") or ["html"])[0] == "json" else "html"
    return after, fmt


@database_sync_to_async
def _access(user, run_id: int) -> tuple[bool, bool]:
    """(may see the run, may change it)."""
    from llmops.accounts.models import Role
    from llmops.accounts.selectors import user_can
    from llmops.runs.models import PipelineRun

    run = PipelineRun.objects.for_user(user).filter(pk=run_id).select_related("workspace").first()
    if run is None:
        return False, False
    return True, user_can(user=user, workspace=run.workspace, role=Role.EDITOR)


@database_sync_to_async
def _events_after(run_id: int, after: int) -> list[dict]:
    from llmops.runs.selectors import events_after

    return events_after(run_id=run_id, after=after, limit=CATCH_UP_PAGE)


@database_sync_to_async
def _render(run_id: int, event: dict, can_edit: bool) -> str:
    from llmops.runs.fragments import event_html

    return event_html(run_id=run_id, event=event, can_edit=can_edit)


class RunConsumer(AsyncWebsocketConsumer):
    group: str | None = None
    last = 0

    async def connect(self):
        # Accept, then close with a code: a close before accept reaches the browser as 1006.
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        visible, self.can_edit = await _access(user, self.run_id)
        if not visible:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.last, self.format = _query(self.scope)
        self.group = group_name(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._catch_up()

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        """Clients only listen; anything they send is ignored."""

    async def run_events(self, message):
        """Events in seq order, as the publisher batched them; a gap is filled from the store."""
        fresh = [e for e in message["events"] if int(e["seq"]) > self.last]
        if not fresh:
            return
        if all(int(e["seq"]) == self.last + 1 + i for i, e in enumerate(fresh)):
            await self._send_events(fresh)
        else:
            await self._catch_up()

    async def _catch_up(self) -> None:
        while True:
            events = await _events_after(self.run_id, self.last)
            await self._send_events(events)
            if len(events) < CATCH_UP_PAGE:
                return

    async def _send_events(self, events: list[dict]) -> None:
        for event in events:
            if event["seq"] <= self.last:
                continue
            if self.format == "json":
                await self.send(text_data=json.dumps(event))
            else:
                await self.send(text_data=await _render(self.run_id, event, self.can_edit))
            self.last = event["seq"]
