"""Code snippets shown on an endpoint's page, filled with its real URL.

The key is read from the LLMOPS_KEY environment variable, so a snippet works when pasted into a
terminal after ``export LLMOPS_KEY=...`` (shown with the real secret right after a key is
created, the only time the secret is known).
"""

from __future__ import annotations

import json
import shlex

EXAMPLE_QUESTION = "How do I publish a pipeline as an API?"


def export_line(secret: str | None) -> str:
    return f"export LLMOPS_KEY={shlex.quote(secret)}" if secret else "export LLMOPS_KEY=<your endpoint key>"


def snippets(
    *, base_url: str, slug: str, secret: str | None = None, question: str = EXAMPLE_QUESTION
) -> dict[str, str]:
    query_url = f"{base_url}/api/v1/endpoints/{slug}/query"
    body = json.dumps({"query": question, "max_tokens": 128, "temperature": 0.2})
    curl = (
        f"{export_line(secret)}\n"
        f"curl -sS -X POST {shlex.quote(query_url)} \\\n"
        '  -H "Authorization: Bearer $LLMOPS_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {shlex.quote(body)}"
    )
    python = (
        "import os\n\nimport requests\n\n"
        "response = requests.post(\n"
        f"    {query_url!r},\n"
        '    headers={"Authorization": "Bearer " + os.environ["LLMOPS_KEY"]},\n'
        f'    json={{"query": {question!r}, "max_tokens": 128, "temperature": 0.2}},\n'
        "    timeout=120,\n"
        ")\n"
        "response.raise_for_status()\n"
        "answer = response.json()\n"
        'print(answer["answer"])\n'
        'for source in answer["sources"]:\n'
        '    print("-", source["document"], round(source["score"], 2))\n'
    )
    openai = (
        "import os\n\nfrom openai import OpenAI\n\n"
        f'client = OpenAI(base_url={base_url + "/v1"!r}, api_key=os.environ["LLMOPS_KEY"])\n'
        "stream = client.chat.completions.create(\n"
        f"    model={slug!r},\n"
        f'    messages=[{{"role": "user", "content": {question!r}}}],\n'
        "    stream=True,\n"
        ")\n"
        "for chunk in stream:\n"
        "    if chunk.choices and chunk.choices[0].delta.content:\n"
        '        print(chunk.choices[0].delta.content, end="", flush=True)\n'
        "print()\n"
    )
    return {"curl": curl, "python": python, "openai": openai}
