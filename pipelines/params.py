"""Helpers shared by the node kinds' params models.

Every params model subclasses ``Params``: unknown fields are errors, and every field carries
a ``title`` and a plain-language ``description`` (the builder renders its form from the JSON
schema). UI hints travel as ``x-`` keys in the schema:

- ``x-widget``: "collection" / "dataset" (pick one of the workspace's objects), "textarea",
  "tags" (a list of short strings), "keyvalue" (a dict of strings), "checkboxes";
- ``x-choices``: ``{value: "Label: one-line explanation"}`` for a select;
- ``x-advanced``: true for fields a newcomer can leave alone (the form folds them away);
- ``x-missing``: the message shown when a required field is not set.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class FieldError(ValueError):
    """Raised by a params model validator to blame one field (pydantic's model-level errors
    have no location; the validator maps this one back to ``field``)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)


def param(
    default: Any = ...,
    *,
    title: str,
    description: str,
    advanced: bool = False,
    widget: str | None = None,
    choices: dict[str, str] | None = None,
    missing: str | None = None,
    **constraints: Any,
) -> Any:
    """A params field with its form metadata (see the module docstring)."""
    extra: dict[str, Any] = {}
    if advanced:
        extra["x-advanced"] = True
    if widget:
        extra["x-widget"] = widget
    if choices:
        extra["x-choices"] = choices
    if missing:
        extra["x-missing"] = missing
    return Field(
        default, title=title, description=description, json_schema_extra=extra or None, **constraints
    )


def describe_choices(choices: dict[str, str]) -> str:
    """A description listing each choice: used where a form shows only the description."""
    return " ".join(f"{value}: {text}" for value, text in choices.items())
