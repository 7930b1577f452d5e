"""Node parameter forms, rendered on the server from each params model's JSON schema.

``schema_fields`` turns the schema into field descriptions the template renders (number
inputs with min/max/step, selects for enums, checkboxes for booleans, textareas for prompts,
comma-separated lists); ``parse_submission`` turns posted strings back into typed JSON, and
``validate_params`` runs the pydantic model, returning cleaned params or errors per field.

UI hints come from ``x-`` keys (see pipelines/params.py). Widgets that pick one of the
workspace's objects ("collection", "dataset", "model") ask an optional provider for choices
(``WIDGET_CHOICES``); without one they fall back to a plain input.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django import forms
from pydantic import ValidationError

logger = logging.getLogger(__name__)
PREFIX = "f_"
# Widgets that pick one of the workspace's objects: "module:function" called as
# function(user=..., workspace=...) -> [(value, label), ...]. A provider whose module does not
# exist yet is skipped and the field stays a plain input.
WIDGET_CHOICES = {
    "collection": "llmops.builder.forms:collection_choices",
    "dataset": "llmops.catalog.selectors:dataset_choices",
    "model": "llmops.catalog.selectors:model_choices",
}
# Free text longer than this is easier to edit in a textarea.
TEXTAREA_MIN_LENGTH = 300


class PipelineForm(forms.Form):
    """Create a pipeline (name and description); the graph comes from the builder."""

    name = forms.CharField(max_length=120, label="Name", widget=forms.TextInput(
        attrs={"placeholder": "e.g. Support answers from our handbook", "autofocus": True}))
    description = forms.CharField(max_length=2000, required=False, label="Description",
                                  widget=forms.Textarea(attrs={"rows": 2}))


class ImportForm(forms.Form):
    file = forms.FileField(label="Pipeline JSON file", help_text="A file exported from this platform.")
    name = forms.CharField(max_length=120, required=False, label="Name (optional)")


@dataclass
class FormField:
    name: str
    title: str
    description: str
    widget: str  # integer, number, select, checkbox, text, textarea, tags, checkboxes, json
    required: bool = False
    nullable: bool = False
    advanced: bool = False
    value: Any = None
    choices: list[tuple[str, str]] = field(default_factory=list)
    suggestions: list[tuple[str, str]] = field(default_factory=list)
    min: Any = None
    max: Any = None
    step: str = ""
    max_length: int | None = None
    missing: str = ""
    item_type: str = "string"
    value_type: str = "string"
    enum_values: dict[str, Any] = field(default_factory=dict)
    hint: str = ""
    consts: dict[str, Any] = field(default_factory=dict)  # special values of a union, e.g. "auto"
    choice_help: dict[str, str] = field(default_factory=dict)  # explanation of each choice
    error: str = ""

    @property
    def input_name(self) -> str:
        return PREFIX + self.name

    @property
    def display(self) -> str:
        """The value as the input shows it."""
        value = self.value
        if value is None:
            return ""
        if self.widget == "tags":
            return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if self.widget == "json":
            return value if isinstance(value, str) else json.dumps(value, indent=2)
        if self.widget == "keyvalue" and isinstance(value, dict):
            return "\n".join(f"{k}: {v}" for k, v in value.items())
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    @property
    def selected_help(self) -> str:
        """The explanation of the chosen option (a select shows one at a time)."""
        return self.choice_help.get(self.display, "") if self.widget == "select" else ""

    @property
    def selected(self) -> set[str]:
        if isinstance(self.value, list):
            return {str(v) for v in self.value}
        return {self.display}


# --- schema -> fields ---------------------------------------------------------------------------


def _resolve(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $ref / allOf[$ref] so the widget sees the real type (keeping local title etc.)."""
    ref = prop.get("$ref") or (prop.get("allOf") or [{}])[0].get("$ref")
    if not ref:
        return prop
    target = defs.get(ref.rsplit("/", 1)[-1], {})
    merged = {**target, **{k: v for k, v in prop.items() if k not in ("$ref", "allOf")}}
    return merged


def _unwrap_union(prop: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any], bool, dict[str, Any]]:
    """(the main type, nullable, special constant values) of an Optional / union field.

    ``int | Literal["auto"]`` becomes an integer field that also accepts "auto".
    """
    options = prop.get("anyOf") or prop.get("oneOf")
    if not options:
        return _resolve(prop, defs), False, {}
    resolved = [_resolve(o, defs) for o in options]
    non_null = [o for o in resolved if o.get("type") != "null"]
    consts = {str(o["const"]): o["const"] for o in non_null if "const" in o}
    rest = [o for o in non_null if "const" not in o]
    if len(rest) == 1:
        base = rest[0]
    elif not rest and consts:
        base, consts = {"type": "string", "enum": list(consts.values())}, {}
    else:
        base = {"type": "object"}
    outer = {k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")}
    return {**base, **outer}, len(non_null) < len(options), consts


def _widget(prop: dict[str, Any]) -> str:
    hint = prop.get("x-widget")
    kind = prop.get("type")
    if hint in ("textarea", "tags", "checkboxes", "keyvalue"):
        return hint
    if "enum" in prop or "const" in prop:
        return "select"
    if kind == "boolean":
        return "checkbox"
    if kind == "integer":
        return "integer"
    if kind == "number":
        return "number"
    if kind == "array":
        return "checkboxes" if "enum" in (prop.get("items") or {}) else "tags"
    if kind == "string":
        return "textarea" if (prop.get("maxLength") or 0) > TEXTAREA_MIN_LENGTH else "text"
    return "json"


def _bounds(field_: FormField, prop: dict[str, Any]) -> None:
    if field_.widget not in ("integer", "number"):
        return
    integer = field_.widget == "integer"
    field_.min = prop.get("minimum")
    field_.max = prop.get("maximum")
    # HTML min/max are inclusive; an exclusive bound on an integer is the next integer.
    if "exclusiveMinimum" in prop:
        field_.min = prop["exclusiveMinimum"] + 1 if integer else prop["exclusiveMinimum"]
    if "exclusiveMaximum" in prop:
        field_.max = prop["exclusiveMaximum"] - 1 if integer else prop["exclusiveMaximum"]
    field_.step = "1" if integer else "any"


def _choices(prop: dict[str, Any], widget: str) -> list[tuple[str, str]]:
    source = (prop.get("items") or {}) if widget == "checkboxes" else prop
    values = source.get("enum") or ([source["const"]] if "const" in source else [])
    labels = prop.get("x-choices") or source.get("x-choices") or {}
    return [(str(v), _choice_label(str(v), labels.get(str(v)))) for v in values]


def _choice_label(value: str, text: str | None) -> str:
    """The option text: the value and the start of its explanation (the rest shows below)."""
    if not text:
        return value
    short = text.split(":")[0] if ":" in text[:40] else text
    if short.lower().replace(" ", "_") == value.lower():
        return short  # "lora — LoRA" says the same thing twice
    return f"{value} — {short}" if len(short) < 60 else f"{value} — {short[:57]}…"


def _without_choice_list(description: str, choice_help: dict[str, str]) -> str:
    """Drop a "value: explanation …" list appended to a description (pipelines' describe_choices):
    the form shows each option's explanation itself."""
    spots = [description.find(f"{value}: {text}") for value, text in choice_help.items()]
    if not spots or min(spots) <= 0:
        return description
    return description[: min(spots)].strip()


def schema_fields(schema: dict[str, Any]) -> list[FormField]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    fields: list[FormField] = []
    for name, raw in (schema.get("properties") or {}).items():
        prop, nullable, consts = _unwrap_union(raw, defs)
        widget = _widget(prop)
        if consts and widget in ("integer", "number"):
            widget = "text"  # a number or a word such as "auto": a text box with suggestions
        item_type = (prop.get("items") or {}).get("type", "string")
        f = FormField(
            name=name, title=prop.get("title") or name.replace("_", " ").capitalize(),
            description=prop.get("description", ""), widget=widget, required=name in required,
            nullable=nullable, advanced=bool(prop.get("x-advanced")), value=prop.get("default"),
            max_length=prop.get("maxLength"), missing=prop.get("x-missing", ""), item_type=item_type,
            value_type=prop.get("type", "string"), hint=prop.get("x-widget", ""), consts=consts,
        )
        f.suggestions = [(k, k) for k in consts]
        _bounds(f, prop)
        if widget in ("select", "checkboxes"):
            f.choices = _choices(prop, widget)
            f.choice_help = {str(k): str(v) for k, v in (prop.get("x-choices") or {}).items()}
            f.description = _without_choice_list(f.description, f.choice_help)
            source = (prop.get("items") or {}) if widget == "checkboxes" else prop
            f.enum_values = {str(v): v for v in source.get("enum") or [source.get("const")]}
        fields.append(f)
    return fields


def attach_choices(fields: list[FormField], *, user, workspace) -> None:
    """Offer the workspace's collections / datasets / models where a provider exists."""
    for f in fields:
        path = WIDGET_CHOICES.get(f.hint)
        provider = _provider(path) if path else None
        if provider is None:
            continue
        try:
            options = [(str(v), str(label)) for v, label in provider(user=user, workspace=workspace)]
        except Exception:  # a broken provider must not break the form; the plain input remains
            logger.exception("choices provider %s failed", path)
            continue
        if f.hint == "model":
            f.suggestions = options  # free text (hub ids) stays allowed
        elif options:
            f.widget, f.choices = "select", options


def collection_choices(*, user, workspace) -> list[tuple[int, str]]:
    from llmops.knowledge.selectors import collection_list

    return [(c.pk, f"{c.name} ({c.document_count} documents)")
            for c in collection_list(user=user, workspace=workspace)[:500]]


def _provider(path: str):
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attr, None)


def fill_values(fields: list[FormField], params: dict[str, Any]) -> None:
    for f in fields:
        if f.name in params:
            f.value = params[f.name]


# --- submission -> typed params -----------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _number(text: str, integer: bool) -> Any:
    text = text.strip()
    if not _NUMBER.match(text):
        return text  # pydantic names the problem ("Input should be a valid number")
    value = float(text)
    if integer and value.is_integer() and "e" not in text.lower():
        return int(text.split(".")[0])
    return value


def _list_item(text: str, item_type: str) -> Any:
    if item_type in ("integer", "number"):
        return _number(text, item_type == "integer")
    return text


def _parse_field(f: FormField, data) -> tuple[bool, Any]:
    """(present, value) of one posted field."""
    key = f.input_name
    if f.widget == "checkbox":
        return True, key in data and data.get(key) not in ("", "false", "off", "0")
    if f.widget == "checkboxes":
        return True, [f.enum_values.get(v, v) for v in data.getlist(key)]
    if key not in data:
        return False, None
    text = data.get(key, "")
    if text.strip() == "":
        if f.nullable:
            return True, None
        if f.widget in ("text", "textarea") and not f.required:
            return True, text
        return False, None  # leave it out: the default applies, or "required" is reported
    if text.strip() in f.consts:
        return True, f.consts[text.strip()]  # a special value such as "auto"
    return True, _convert(f, text)


def _convert(f: FormField, text: str) -> Any:
    """The typed value of a non-empty input; text that does not convert is passed on as is,
    so the params model reports it in its own words."""
    if f.widget in ("integer", "number"):
        return _number(text, f.widget == "integer")
    if f.widget == "tags":
        items = [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
        return [_list_item(item, f.item_type) for item in items]
    if f.widget == "json":
        try:
            return json.loads(text, parse_constant=lambda name: name)
        except (ValueError, RecursionError):
            return text
    if f.widget == "keyvalue":
        return _key_values(text)
    if text in f.enum_values:
        return f.enum_values[text]  # enum values arrive as strings; give back the real value
    if f.value_type in ("integer", "number"):
        return _number(text, f.value_type == "integer")  # e.g. a collection picked by id
    return text


def _key_values(text: str) -> Any:
    """"name: value" lines as a dict; a line without a separator is kept for pydantic to reject."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            return text
        out[key.strip()] = value.strip()
    return out


def parse_submission(fields: list[FormField], data) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for f in fields:
        present, value = _parse_field(f, data)
        if present:
            params[f.name] = value
    return params


def validate_params(params_model, params: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(cleaned params, {}) or (None, {field: message})."""
    try:
        cleaned = params_model.model_validate(params)
    except ValidationError as exc:
        return None, _field_errors(params_model, exc)
    return cleaned.model_dump(mode="json"), {}


def _field_errors(params_model, exc: ValidationError) -> dict[str, str]:
    schema_props = params_model.model_json_schema().get("properties", {})
    errors: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else "__all__"
        cause = (err.get("ctx") or {}).get("error")
        if getattr(cause, "field", None):  # pipelines.params.FieldError blames one field
            name = cause.field
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = (schema_props.get(name, {}).get("x-missing")) or "This field is required."
        errors.setdefault(name, message)
    return errors
