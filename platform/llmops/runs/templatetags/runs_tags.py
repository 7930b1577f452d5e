"""Formatting for run pages: durations, ETAs, percentages."""

from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def duration(seconds) -> str:
    """12.3 -> "12.3 s", 95 -> "1 min 35 s", 7300 -> "2 h 01 min"."""
    if seconds is None or seconds == "":
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def eta(seconds) -> str:
    if seconds is None or seconds == "":
        return ""
    seconds = float(seconds)
    if seconds < 1:
        return "almost done"
    if seconds < 60:
        return f"about {round(seconds)} s left"
    if seconds < 3600:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"


@register.filter
def percent(fraction) -> str:
    if fraction is None or fraction == "":
        return ""
    return f"{max(0.0, min(1.0, float(fraction))) * 100:.0f}%"


@register.filter
def width(fraction) -> str:
    """CSS width for a progress bar ("0%" when unknown)."""
    if fraction is None or fraction == "":
        return "0%"
    return f"{max(0.0, min(1.0, float(fraction))) * 100:.1f}%"


@register.filter
def json_attr(value) -> str:
    """JSON for a data-* attribute (autoescaping then quotes it safely)."""
    return json.dumps(value, default=str)
