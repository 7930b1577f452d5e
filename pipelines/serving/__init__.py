"""Serving: RAG services built by the ``serve.rag`` node and answered by serve workers.

    protocol    service.json (ServiceConfig), request limits, QueryIn, sinks (pure: the web uses it)
    prompt      prompt assembly within a token budget, extractive answers (pure)
    retrieval   batched embedding + FAISS search, adapter routing by description
    generation  batched transformers generation, streaming, cancellation, multi-LoRA
    hosted      an OpenAI-compatible API as the generator (httpx)
    service     RagService: load a service folder, answer a batch of requests
    engine      ServeEngine: per-process warm-service LRU cache and batching loop

Only ``protocol`` and ``prompt`` are light; the rest import torch/faiss lazily or at module
level and are used on workers (and in tests, benchmarks).
"""
