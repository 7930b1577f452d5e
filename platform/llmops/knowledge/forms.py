from __future__ import annotations

from django import forms

from llmops.knowledge.search import MAX_K, MAX_QUERY
from llmops.knowledge.services import MAX_DESCRIPTION, MAX_NAME
from pipelines.nodes.vectorize_faiss.spec import DEFAULT_EMBEDDING_MODEL, INDEX_TYPES, METRICS


class CollectionForm(forms.Form):
    name = forms.CharField(
        max_length=MAX_NAME, widget=forms.TextInput(attrs={"placeholder": "e.g. HR policies"})
    )
    description = forms.CharField(
        max_length=MAX_DESCRIPTION,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What is in it (optional)"}),
    )


class IndexForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "optional, e.g. Handbook search"}),
    )
    embedding_model = forms.CharField(
        max_length=500,
        initial=DEFAULT_EMBEDDING_MODEL,
        help_text="The bundled all-MiniLM-L6-v2 works offline.",
    )
    chunk_size = forms.IntegerField(
        min_value=16, max_value=8192, initial=256, help_text="Tokens per passage."
    )
    chunk_overlap = forms.IntegerField(
        min_value=0, max_value=4096, initial=32, help_text="Tokens shared by neighbouring passages."
    )
    index_type = forms.ChoiceField(choices=[(k, k) for k in INDEX_TYPES], initial="auto")
    metric = forms.ChoiceField(choices=[(k, k) for k in METRICS], initial="cosine")
    follow_collection = forms.BooleanField(
        required=False, initial=True, help_text="Index new uploads automatically."
    )

    def clean(self):
        data = super().clean()
        size, overlap = data.get("chunk_size"), data.get("chunk_overlap")
        if size is not None and overlap is not None and overlap >= size:
            self.add_error("chunk_overlap", "The overlap must be smaller than the chunk size.")
        return data


class SearchForm(forms.Form):
    query = forms.CharField(
        max_length=MAX_QUERY,
        widget=forms.TextInput(
            attrs={"placeholder": "Ask a question about your documents…", "autocomplete": "off"}
        ),
    )
    k = forms.IntegerField(min_value=1, max_value=MAX_K, initial=5, required=False)
    index = forms.IntegerField(required=False, widget=forms.HiddenInput)
