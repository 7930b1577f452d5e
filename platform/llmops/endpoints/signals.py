"""Publishing follows a run: when a run's final event says "succeeded" and the run has a
Publish API step, its endpoints are published (new version, pointer switched atomically).

The engine's run-level event is the public contract (EVENTS.md: type "run", status in the
payload), so this listens to the stored RunEvent rather than reaching into the engine. The
work runs after the event's transaction commits, in whichever process finished the run.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

DISPATCH_UID = "llmops.endpoints.publish_on_success"


def _on_event(sender, instance, created: bool, **kwargs) -> None:
    if not created or instance.type != "run" or instance.node_id:
        return
    if (instance.payload or {}).get("status") != "succeeded":
        return
    run_id = instance.run_id

    def publish() -> None:
        from llmops.endpoints.services import run_publish_on_success

        run_publish_on_success(run_id=run_id)

    transaction.on_commit(publish, robust=True)


def _access_changed(sender, **kwargs) -> None:
    from llmops.endpoints.access import access_changed

    access_changed()


def connect() -> None:
    from llmops.endpoints.models import Endpoint, EndpointKey, EndpointVersion, HostedProvider
    from llmops.runs.models import RunEvent

    post_save.connect(_on_event, sender=RunEvent, dispatch_uid=DISPATCH_UID)
    # Whatever decides who may ask what: the web's lookup caches must drop it (access.py).
    for model in (Endpoint, EndpointVersion, EndpointKey, HostedProvider):
        for signal in (post_save, post_delete):
            signal.connect(
                _access_changed, sender=model, dispatch_uid=f"llmops.endpoints.access.{model.__name__}"
            )
