"""Search from the web process, which may not load models or FAISS itself: the query goes to a
serve worker as the task ``llmops.knowledge.search`` (ids and text only) and the answer, vector
ids with scores, is joined here with the chunk table for texts and document names.

Joining through the table also means a deleted document's passages are never shown, even in
the seconds before the worker has removed its vectors from the index.
"""

from __future__ import annotations

import html
import re
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from llmops.config.celery import send_task
from llmops.knowledge.models import Chunk, VectorIndex

SEARCH_TASK = "llmops.knowledge.search"
MAX_QUERY = 2000
MAX_K = 50
# Extra hits asked of the worker, to still return k after dropping deleted documents' passages.
OVERFETCH = 10


class SearchError(Exception):
    """A search that cannot be answered; ``status`` is the HTTP status for the API."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def index_search(*, index: VectorIndex, query: str, k: int = 5, model: str | None = None) -> dict[str, Any]:
    query = (query or "").strip()
    if not query:
        raise SearchError("Type a question or some words to search for.")
    if len(query) > MAX_QUERY:
        raise SearchError(f"The query is longer than {MAX_QUERY} characters.")
    if not 1 <= int(k) <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}.")
    if model and model.strip() and model.strip() != index.model_name:
        raise SearchError(
            f"This index was built with {index.model_name!r}; a query embedded with {model.strip()!r} "
            "cannot be compared with it. Leave the model out or rebuild the index.",
            status=409,
        )
    if index.version == 0 or not index.path:
        raise SearchError("This index has not been built yet; wait until its status is Ready.", status=409)
    answer = _ask_worker(index, query, int(k) + OVERFETCH)
    if answer.get("error"):
        raise SearchError(answer["error"], status=int(answer.get("status", 409)))
    hits = _join_chunks(index, answer.get("hits", []), query)[: int(k)]
    return {
        "index": index.pk,
        "query": query,
        "k": int(k),
        "model": answer.get("model", index.model_name),
        "version": answer.get("version"),
        "hits": hits,
        "timings_ms": {key: answer.get(key) for key in ("load_ms", "embed_ms", "search_ms")},
    }


def _ask_worker(index: VectorIndex, query: str, k: int) -> dict[str, Any]:
    from celery.exceptions import TimeoutError as CeleryTimeout

    timeout = settings.LLMOPS_SEARCH_TIMEOUT_S
    try:
        result = send_task(
            SEARCH_TASK,
            kwargs={"index_id": index.pk, "workspace_id": index.workspace_id, "query": query, "k": k},
            queue="serve",
            expires=timeout + 5,  # a search nobody picked up in time is dropped, not run late
        )
        return result.get(timeout=timeout, propagate=True)
    except CeleryTimeout:
        raise SearchError(_no_answer_message(timeout), status=503) from None
    except (OSError, ConnectionError) as exc:
        raise SearchError(
            f"The task queue cannot be reached ({exc}). Is Redis running?", status=503
        ) from None
    except Exception as exc:  # noqa: BLE001 - a crashed task must be an answer, not a 500
        name = type(exc).__name__
        if "OperationalError" in name or "ConnectionError" in name:
            raise SearchError(f"The task queue cannot be reached ({exc}).", status=503) from None
        raise SearchError(f"The search failed on the worker: {name}: {exc}"[:500], status=502) from None


def _no_answer_message(timeout: float) -> str:
    from llmops.core.health import workers_by_queue

    try:
        serving = workers_by_queue(timeout=1.0).get("serve", [])
    except Exception:  # noqa: BLE001 - the message is the best we can say either way
        serving = []
    if not serving:
        return (
            "No search worker is running: start a worker for the 'serve' queue "
            "(llmops worker -Q serve) and try again."
        )
    return (
        f"The search worker did not answer within {timeout:g} s (it may still be loading the "
        "embedding model). Try again in a few seconds."
    )


def _join_chunks(index: VectorIndex, hits: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    ids = [int(h["id"]) for h in hits]
    rows = {
        c.vector_id: c
        for c in Chunk.objects.filter(index=index, vector_id__in=ids).select_related("document")
    }
    terms = query_terms(query)
    out = []
    for hit in hits:
        chunk = rows.get(int(hit["id"]))
        if chunk is None:
            continue  # its document was deleted or replaced since the index version was built
        out.append(
            {
                "chunk": chunk.vector_id,
                "score": hit["score"],
                "text": chunk.text,
                "position": chunk.position,
                "metadata": chunk.metadata,
                "document": {
                    "id": chunk.document_id,
                    "name": chunk.document.name,
                    "url": reverse("knowledge:document", args=[chunk.document_id]),
                },
                "matches": match_spans(chunk.text, terms),
            }
        )
    return out


# --- highlighting ------------------------------------------------------------------------------

_STOPWORDS = {
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "can",
    "do",
    "does",
    "for",
    "from",
    "has",
    "have",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "of",
    "on",
    "or",
    "so",
    "than",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "what",
    "when",
    "where",
    "which",
    "who",
    "why",
    "will",
    "with",
    "you",
    "your",
}
_WORD = re.compile(r"\w+", re.U)


def query_terms(query: str) -> list[str]:
    """Words worth highlighting: not stopwords, at least 2 characters, crude plural folding."""
    terms = []
    for word in _WORD.findall(query.lower()):
        if len(word) < 2 or word in _STOPWORDS:
            continue
        stem = word[:-1] if len(word) > 4 and word.endswith("s") else word
        if stem not in terms:
            terms.append(stem)
    return terms


def match_spans(text: str, terms: list[str]) -> list[list[int]]:
    """[start, end] of every word of ``text`` starting with one of the terms."""
    if not terms:
        return []
    pattern = re.compile(
        r"\b(?:" + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)) + r")\w*", re.I | re.U
    )
    return [[m.start(), m.end()] for m in pattern.finditer(text)]


def highlight(text: str, spans: list[list[int]]) -> SafeString:
    """HTML of ``text`` with <mark> around the spans; everything else escaped."""
    parts, last = [], 0
    for start, end in spans:
        if start < last:
            continue
        parts.append(html.escape(text[last:start]))
        parts.append(f"<mark>{html.escape(text[start:end])}</mark>")
        last = end
    parts.append(html.escape(text[last:]))
    return mark_safe("".join(parts))  # noqa: S308 - every piece of user text above is escaped
