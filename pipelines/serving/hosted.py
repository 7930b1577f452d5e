"""A hosted generator: any OpenAI-compatible ``/chat/completions`` API (OpenAI, vLLM, Ollama,
another endpoint of this platform...). Retrieval still runs here; only the writing is remote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipelines.serving.protocol import HostedConfig

# A hosted API counts tokens with its own tokenizer; without a usage report, ~4 characters
# per token is the usual English estimate.
CHARS_PER_TOKEN = 4


class HostedError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _estimate(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def complete(
    config: HostedConfig,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float,
    on_delta: Callable[[str], None],
    cancelled: Callable[[], bool],
) -> dict[str, Any]:
    """Stream one answer; returns {text, finish_reason, prompt_tokens, completion_tokens}."""
    import httpx

    body = {
        "model": config.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    url = config.base_url.rstrip("/") + "/chat/completions"
    state: dict[str, Any] = {"text": "", "finish_reason": None, "usage": None}
    try:
        with (
            httpx.Client(timeout=config.timeout_s) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise HostedError(
                    502, f"the hosted model answered {response.status_code}: {_error_text(response)}"
                )
            for line in response.iter_lines():
                if cancelled():
                    state["finish_reason"] = "cancelled"
                    break
                if _consume(line, state, on_delta):
                    break
    except httpx.HTTPError as exc:
        raise HostedError(502, f"the hosted model at {config.base_url} could not be reached: {exc}") from exc
    usage = state["usage"] or {}
    return {
        "text": state["text"],
        "finish_reason": state["finish_reason"] or "stop",
        "prompt_tokens": int(usage.get("prompt_tokens") or _estimate(prompt)),
        "completion_tokens": int(usage.get("completion_tokens") or _estimate(state["text"])),
    }


def _consume(line: str, state: dict[str, Any], on_delta: Callable[[str], None]) -> bool:
    """Handle one SSE line; True at ``data: [DONE]``."""
    if not line.startswith("data:"):
        return False
    data = line[5:].strip()
    if data == "[DONE]":
        return True
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    if chunk.get("usage"):
        state["usage"] = chunk["usage"]
    for choice in chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") or ""
        if text:
            state["text"] += text
            on_delta(text)
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]
    return False


def _error_text(response) -> str:
    try:
        data = response.json()
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            return str(error.get("message", ""))[:300]
        return str(data.get("detail", data))[:300]
    except ValueError:
        return response.text[:300]
