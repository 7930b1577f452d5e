"""How long-running quantization steps report back (the node passes its context's methods)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


@dataclass
class Hooks:
    progress: Callable[..., None] = _nothing  # (done, total, message, **metrics)
    metric: Callable[..., None] = _nothing  # (name, value, step)
    log: Callable[..., None] = _nothing  # (message, level)
    check_cancelled: Callable[[], None] = _nothing

    @classmethod
    def from_context(cls, ctx: Any) -> Hooks:
        return cls(progress=ctx.progress, metric=ctx.metric, log=ctx.log, check_cancelled=ctx.check_cancelled)
