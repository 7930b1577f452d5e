"""The REPORT artifact's JSON shape, shared by training and evaluation.

    {"kind": "train.lora" | "evaluate", "title": str,
     "summary": [{"label": str, "value": str}],            # the headline numbers, in order
     "tables":  [{"title": str, "columns": [str], "rows": [[str | number]]}],
     "charts":  [{"title": str, "type": "line" | "bar", "x_label": str, "y_label": str,
                  "labels": [x values], "series": [{"name": str, "data": [numbers]}]}],
     "notes":   [str],                                     # fallbacks, estimates, warnings
     "data":    {...}}                                     # every raw number, for the API

The run page draws ``charts`` with Chart.js as they are; ``data`` is for engineers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def build(
    kind: str,
    title: str,
    *,
    summary: list[tuple[str, Any]],
    tables: list[dict] | None = None,
    charts: list[dict] | None = None,
    notes: list[str] | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return _clean(
        {
            "kind": kind,
            "title": title,
            "summary": [{"label": label, "value": value} for label, value in summary],
            "tables": tables or [],
            "charts": charts or [],
            "notes": notes or [],
            "data": data or {},
        }
    )


def line_chart(
    title: str, points: list[tuple[int, float]], *, name: str, x_label: str = "step", y_label: str = ""
) -> dict[str, Any]:
    return {
        "title": title,
        "type": "line",
        "x_label": x_label,
        "y_label": y_label or name,
        "labels": [x for x, _ in points],
        "series": [{"name": name, "data": [y for _, y in points]}],
    }


def bar_chart(
    title: str, labels: list[str], series: dict[str, list[float | None]], y_label: str = ""
) -> dict:
    return {
        "title": title,
        "type": "bar",
        "x_label": "",
        "y_label": y_label,
        "labels": labels,
        "series": [{"name": name, "data": data} for name, data in series.items()],
    }


def write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return path


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities (a diverged loss) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def fmt_bytes(size: int | None) -> str:
    if size is None:
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
