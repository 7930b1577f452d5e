from __future__ import annotations

from django import forms

from llmops.catalog.services import MAX_NAME

FORMAT_CHOICES = [
    ("auto", "Detect from the file"),
    ("instruction", "Instructions (JSONL: instruction, input, output)"),
    ("chat", "Chat (JSONL: messages with role and content)"),
    ("text", "Plain text (one example per line)"),
    ("classification", "Labelled rows (CSV: text, label)"),
]


class ModelRegisterForm(forms.Form):
    reference = forms.CharField(
        max_length=500,
        label="Hub id or folder",
        widget=forms.TextInput(attrs={"placeholder": "meta-llama/Llama-2-7b-hf  or  /models/my-llama"}),
    )
    name = forms.CharField(max_length=MAX_NAME, required=False, label="Display name")
    revision = forms.CharField(max_length=100, required=False, label="Revision (optional)")


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.ndjson,.json,.csv,.tsv,.txt,.md"}),
    )
    name = forms.CharField(max_length=MAX_NAME, required=False, label="Name (optional)")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, initial="auto")
