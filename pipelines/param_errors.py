"""Pydantic errors of a node's params, in plain language, one message per field.

Shared by the graph validator and the builder's forms, so a field's error reads the same on
the canvas and in the form.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from pipelines.params import FieldError
from pipelines.spec import NodeSpec


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def param_problems(exc: ValidationError, spec: NodeSpec) -> dict[str | None, tuple[str, str]]:
    """One (code, message) per field, in the form's order; the several errors of a union field
    (batch size: a number or "auto") become one message."""
    codes: dict[str | None, str] = {}
    details: dict[str | None, list[str]] = {}
    for err in exc.errors(include_url=False):
        name, code, detail = _param_problem(err, spec)
        codes.setdefault(name, code)
        if detail not in details.setdefault(name, []):
            details[name].append(detail)
    out = {}
    for name, code in codes.items():
        text = " or ".join(details[name])
        out[name] = (code, text if code != "invalid_param" else f"{_title(spec, name)}: {text}.")
    order = list(spec.params.model_fields)
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _param_problem(err: dict[str, Any], spec: NodeSpec) -> tuple[str | None, str, str]:
    """(field, code, detail); for invalid_param the detail is completed with the field's title."""
    loc = err.get("loc") or ()
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, FieldError):
        return error.field, "invalid_param", error.message
    name = str(loc[0]) if loc else None
    kind = err.get("type", "")
    if kind == "missing":
        info = spec.params.model_fields.get(name or "")
        extra = info.json_schema_extra if info and isinstance(info.json_schema_extra, dict) else {}
        return name, "missing_param", str(extra.get("x-missing") or f"{_title(spec, name)} is required.")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(name or "", list(spec.params.model_fields), n=1)
        hint = f" Did you mean “{close[0]}”?" if close else ""
        short = _short(name or "")
        return short, "unknown_param", f"{spec.label} has no setting “{short}”.{hint}"
    return name, "invalid_param", plain_message(err)


def _title(spec: NodeSpec, name: str | None) -> str:
    info = spec.params.model_fields.get(name or "")
    return (info.title if info and info.title else name) or spec.label


# pydantic error type -> a plain sentence (ctx holds the bounds)
_MESSAGES = {
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "has characters that are not allowed here",
    "literal_error": "must be one of {expected}",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "may have at most {max_length} items",
    "list_type": "must be a list",
    "dict_type": "must be an object (names and values)",
}


def plain_message(err: dict[str, Any]) -> str:
    template = _MESSAGES.get(err.get("type", ""))
    if template:
        try:
            return template.format(**(err.get("ctx") or {}))
        except (KeyError, IndexError, ValueError):
            pass
    return str(err.get("msg", "invalid value")).removeprefix("Value error, ")
