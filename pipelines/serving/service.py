"""A loaded RAG service: answers a batch of requests with one retrieval pass and one
continuous batch on the local model, every adapter in it (or extractively, or through a
hosted API); requests that arrive meanwhile can join that batch.

``RagService.load(folder)`` reads a SERVICE artifact folder (see ``protocol``); the LLM is
loaded on the first request that needs it, so extractive and hosted services never load one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from pipelines.serving import prompt as prompts
from pipelines.serving.protocol import (
    BASE_ADAPTER,
    CollectingSink,
    ModelPin,
    ServeRequest,
    ServiceConfig,
    ServiceError,
    Sink,
    effective_max_tokens,
    effective_temperature,
)

# Hosted models have long contexts; passages beyond this (estimated) size are left out.
HOSTED_CONTEXT_TOKENS = 6000
ModelResolver = Callable[[ModelPin], Path]
# More requests for a running batch: at most `room` of them, possibly none.
Admit = Callable[[int], list[tuple[ServeRequest, Sink]]]


def default_model_resolver(pin: ModelPin) -> Path:
    """The model folder on this machine: the pinned path, else built/downloaded from metadata."""
    if pin.path and (Path(pin.path) / "config.json").is_file():
        return Path(pin.path)
    from pipelines.context import ArtifactRef
    from pipelines.ml.loading import model_folder
    from pipelines.types import ArtifactType

    ref = ArtifactRef(
        type=ArtifactType.MODEL,
        path=Path(pin.path) if pin.path else None,
        metadata=pin.metadata,
        key=pin.key,
        id=pin.artifact_id,
    )
    return model_folder(ref)


class RagService:
    def __init__(
        self,
        folder: Path,
        config: ServiceConfig,
        *,
        device: str = "cpu",
        resolve_model: ModelResolver | None = None,
    ):
        from pipelines.serving.retrieval import Retriever

        self.folder, self.config, self.device = Path(folder), config, device
        self.resolve_model = resolve_model or default_model_resolver
        self.retriever = Retriever(self.folder / config.index, device=device)
        self._generator = None
        self._router = None
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, folder: Path, *, device: str = "cpu", resolve_model: ModelResolver | None = None
    ) -> RagService:
        return cls(Path(folder), ServiceConfig.load(folder), device=device, resolve_model=resolve_model)

    # --- lazily loaded parts ---------------------------------------------------------------------

    @property
    def generator(self):
        with self._lock:
            if self._generator is None:
                self._generator = self._load_generator()
            return self._generator

    def _load_generator(self):
        from pipelines.serving.generation import LocalGenerator

        if self.config.model is None:
            raise ServiceError("this service has no model: use extractive mode or a hosted model")
        folder = self.resolve_model(self.config.model)
        adapters = [(pin, self.folder / pin.path) for pin in self.config.adapters]
        return LocalGenerator.load(folder, device=self.device, adapters=adapters)

    @property
    def router(self):
        with self._lock:
            if self._router is None:
                from pipelines.serving.retrieval import AdapterRouter

                self._router = AdapterRouter(
                    self.retriever, {a.name: a.description for a in self.config.adapters}
                )
            return self._router

    def warm(self) -> None:
        """Load everything a request will need now (the worker does this on the first request)."""
        if self.config.mode == "generate":
            self.generator  # noqa: B018 - loads it
        if self.config.adapters:
            self.router  # noqa: B018

    # --- answering ---------------------------------------------------------------------------------

    def answer(self, request: ServeRequest, sink: Sink | None = None) -> dict[str, Any]:
        """One request, in this process (tests, benchmarks, the in-process reference). Without a
        sink, returns the result or raises ServiceError; with one, the sink gets everything."""
        if sink is not None:
            self.answer_batch([(request, sink)])
            return getattr(sink, "result", None) or {}
        own = CollectingSink()
        self.answer_batch([(request, own)])
        return own.unwrap()

    def answer_batch(
        self,
        items: list[tuple[ServeRequest, Sink]],
        *,
        hosted_pool: Executor | None = None,
        admit: Admit | None = None,
        max_rows: int | None = None,
    ) -> None:
        """Answer every request; each sink gets its deltas then ``done`` or ``error``.

        While the local model generates, ``admit(room)`` may hand over up to ``room`` more
        requests for this service: they are retrieved for and join the running batch."""
        local = self._begin(items, hosted_pool)
        if local:
            self._generate_local(local, admit=admit, hosted_pool=hosted_pool, max_rows=max_rows)

    def _begin(self, items: list[tuple[ServeRequest, Sink]], hosted_pool: Executor | None) -> list[_Item]:
        """One retrieval pass for the requests; extractive and hosted ones are answered (or
        handed to the pool), the ones for the local model are returned."""
        items = [(r, s) for r, s in items if not s.cancelled()]
        if not items:
            return []
        started = time.perf_counter()
        vectors = self.retriever.embed([r.query for r, _ in items])
        found = self.retriever.search(vectors, k=self.config.top_k, threshold=self.config.score_threshold)
        retrieval_ms = (time.perf_counter() - started) * 1000
        batch = [
            _Item(r, s, src, vec, retrieval_ms, len(items))
            for (r, s), src, vec in zip(items, found, vectors, strict=True)
        ]
        if self.config.mode == "extractive":
            for item in batch:
                self._extractive(item)
            return []
        for item in batch:
            if item.request.hosted is not None:
                self._submit_hosted(item, hosted_pool)
        return [i for i in batch if i.request.hosted is None]

    def _extractive(self, item: _Item) -> None:
        answer = prompts.extractive_answer(item.sources)
        if item.request.stream:
            item.sink.delta(answer)
        item.finish(
            answer,
            prompt_tokens=self.retriever.count_tokens(item.request.query),
            completion_tokens=0,
            finish_reason="stop",
            mode="extractive",
        )

    # --- local model -----------------------------------------------------------------------------

    def _generate_local(
        self, items: list[_Item], *, admit: Admit | None, hosted_pool: Executor | None, max_rows: int | None
    ) -> None:
        """Continuous batching on the local model: every item (and every admitted one) is
        answered as its own row ends."""
        started: list[tuple[Any, _Item]] = []
        try:
            generator = self.generator
            jobs = self._jobs(generator, items, started)
        except ServiceError as exc:
            for item in items:
                item.sink.error(getattr(exc, "status", 500), str(exc))
            return

        def more(room: int) -> list:
            fresh, before = admit(room), len(started)
            try:
                return self._jobs(generator, self._begin(fresh, hosted_pool), started)
            except Exception as exc:  # noqa: BLE001 - a newcomer's failure is its own, not the batch's
                del started[before:]
                for _, sink in fresh:
                    sink.error(500, f"the request could not be prepared: {type(exc).__name__}: {exc}")
                return []

        try:
            generator.generate(jobs, admit=more if admit is not None else None, max_rows=max_rows)
        except Exception as exc:  # noqa: BLE001 - one failed batch must not kill the worker loop
            for job, item in started:
                if job.finish_reason is None:
                    item.sink.error(500, f"generation failed: {type(exc).__name__}: {exc}")

    def _jobs(self, generator, items: list[_Item], started: list) -> list:
        """A generation job per item (items refused an adapter already have their error)."""
        from pipelines.serving.generation import GenJob

        self._choose_adapters(items)
        jobs = []
        for item in items:
            if item.adapter is False:
                continue
            job = self._job(generator, item, GenJob)
            jobs.append(job)
            started.append((job, item))
        return jobs

    def _job(self, generator, item: _Item, job_type):
        request = item.request
        wanted = effective_max_tokens(request.max_tokens, self.config.max_tokens)
        budget, answer_tokens = generator.budget(wanted)
        text, item.used = prompts.fit_context(
            self.config.prompt_template,
            request.query,
            item.sources,
            budget=budget,
            count=generator.count,
            truncate=generator.truncate,
        )
        ids = generator.encode(text)[-budget:]
        stream = item.sink.delta if request.stream else _ignore
        return job_type(
            prompt_ids=ids,
            max_new_tokens=answer_tokens,
            temperature=effective_temperature(request.temperature, self.config.temperature),
            on_delta=stream,
            cancelled=item.sink.cancelled,
            adapter=item.adapter or None,
            on_finish=item.finish_generated,
        )

    def _choose_adapters(self, items: list[_Item]) -> None:
        """Each item's adapter name (None: the base model). A bad name fails only its item."""
        names = [a.name for a in self.config.adapters]
        for item in items:
            wanted = item.request.adapter
            if wanted == BASE_ADAPTER or not names:
                item.adapter = None
            elif wanted:
                if wanted not in names:
                    item.sink.error(
                        422,
                        f"adapter: unknown adapter {wanted!r}; this service has "
                        f"{', '.join([BASE_ADAPTER, *names])}",
                    )
                    item.adapter = False
                else:
                    item.adapter = wanted
            elif self.config.adapter_routing == "named":
                item.adapter = None
            else:
                item.adapter, item.adapter_score = self._route(item.vector, names)

    def _route(self, vector, names: list[str]) -> tuple[str | None, float | None]:
        name, score = self.router.choose(vector)
        if name is None:  # no descriptions: the only (or first) adapter
            return names[0], None
        return name, score

    # --- hosted model ----------------------------------------------------------------------------

    def _submit_hosted(self, item: _Item, pool: Executor | None) -> None:
        if pool is None:
            self._hosted(item)
        else:
            pool.submit(self._hosted, item)

    def _hosted(self, item: _Item) -> None:
        from pipelines.serving.hosted import HostedError, complete

        request = item.request
        text, item.used = prompts.fit_context(
            self.config.prompt_template,
            request.query,
            item.sources,
            budget=HOSTED_CONTEXT_TOKENS,
            count=_estimate_tokens,
            truncate=lambda s, n: s[: n * 4],
        )
        started = time.perf_counter()
        try:
            out = complete(
                request.hosted,
                text,
                max_tokens=effective_max_tokens(request.max_tokens, self.config.max_tokens),
                temperature=effective_temperature(request.temperature, self.config.temperature),
                on_delta=item.sink.delta if request.stream else _ignore,
                cancelled=item.sink.cancelled,
            )
        except HostedError as exc:
            item.sink.error(exc.status, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure of the remote call is that request's error
            item.sink.error(502, f"hosted model failed: {type(exc).__name__}: {exc}")
            return
        item.adapter = None
        item.finish(
            out["text"],
            prompt_tokens=out["prompt_tokens"],
            completion_tokens=out["completion_tokens"],
            finish_reason=out["finish_reason"],
            mode="hosted",
            generation_ms=(time.perf_counter() - started) * 1000,
        )


def _ignore(_text: str) -> None:
    return None


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class _Item:
    """One request while its batch is being answered."""

    def __init__(
        self,
        request: ServeRequest,
        sink: Sink,
        sources: list[dict[str, Any]],
        vector,
        retrieval_ms: float,
        batch_size: int,
    ):
        self.request, self.sink, self.sources, self.vector = request, sink, sources, vector
        self.retrieval_ms, self.batch_size = retrieval_ms, batch_size
        self.adapter: str | None | bool = None  # False: refused (its sink already has the error)
        self.adapter_score: float | None = None
        self.used = len(sources)

    def finish_generated(self, job) -> None:
        """A local generation job ended: its answer, with its own numbers."""
        self.batch_size = job.batch_rows
        self.finish(
            job.text,
            prompt_tokens=len(job.prompt_ids),
            completion_tokens=len(job.ids),
            finish_reason=job.finish_reason or "stop",
            mode="generate",
            generation_ms=job.generation_ms,
        )

    def finish(
        self,
        answer: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        finish_reason: str,
        mode: str,
        generation_ms: float = 0.0,
    ) -> None:
        self.sink.done(
            {
                "answer": answer.strip(),
                "sources": self.sources,
                "usage": {"prompt_tokens": int(prompt_tokens), "completion_tokens": int(completion_tokens)},
                "mode": mode,
                "adapter": self.adapter if isinstance(self.adapter, str) else None,
                "adapter_score": self.adapter_score,
                "finish_reason": finish_reason,
                "timings": {
                    "retrieval_ms": round(self.retrieval_ms, 2),
                    "generation_ms": round(generation_ms, 2),
                    "batch_size": self.batch_size,
                },
            }
        )
