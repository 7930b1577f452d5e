"""Continuous batching on a tiny real model: the slab decoder against transformers' own
``generate``, requests joining a running batch, rows leaving it, slots reused, the slab grown
and trimmed, several adapters in one batch, and the service taking in newcomers."""

from __future__ import annotations

import time

import pytest

from pipelines.serving.generation import GenJob, LocalGenerator
from pipelines.serving.protocol import CollectingSink, ServeRequest

PROMPTS = [
    "Every invoice must be paid by bank transfer within",
    "The trail to the summit starts at",
    "Llamas eat hay and grass and need",
    "Refunds for double payments are made to the original account within a week. The billing team",
    "Bring two litres of water",
]


def job(generator: LocalGenerator, prompt: str, tokens: int, **kw) -> GenJob:
    deltas: list[str] = []
    made = GenJob(
        prompt_ids=generator.encode(prompt),
        max_new_tokens=tokens,
        temperature=kw.pop("temperature", 0.0),
        on_delta=deltas.append,
        cancelled=kw.pop("cancelled", lambda: False),
        **kw,
    )
    made.deltas = deltas  # type: ignore[attr-defined]
    return made


@pytest.fixture(scope="module")
def generator(parts):
    return LocalGenerator.load(parts["model"], device="cpu", adapters=[])


@pytest.fixture
def endless(generator):
    """The same model with no end-of-sequence token: every row runs to its own budget."""
    eos = generator.eos
    generator.eos = set()
    yield generator
    generator.eos = eos


def alone(generator: LocalGenerator, prompt: str, tokens: int, **kw) -> GenJob:
    single = job(generator, prompt, tokens, **kw)
    generator.generate([single])
    return single


def test_the_slab_decoder_gives_transformers_greedy_answers(generator):
    mine = [job(generator, p, 12) for p in PROMPTS]
    generator.generate(mine)
    theirs = [job(generator, p, 12) for p in PROMPTS]
    generator.continuous = False
    try:
        generator.generate(theirs)
    finally:
        generator.continuous = True
    assert [j.ids for j in mine] == [j.ids for j in theirs]
    assert [j.finish_reason for j in mine] == [j.finish_reason for j in theirs]
    for made in mine:
        assert "".join(made.deltas) == made.text
        assert made.batch_rows == len(PROMPTS)


@pytest.mark.parametrize("together", [False, True], ids=["prefill-alone", "prefill-together"])
def test_requests_join_a_running_batch_and_leave_it_when_done(endless, together, monkeypatch):
    """Newcomers arrive on later steps (some longer than the running rows, some shorter); rows
    end at different steps and their slots are reused. Every answer is the one it gets alone."""
    plan = {  # admit call number -> jobs handed over then
        0: [(PROMPTS[0], 3), (PROMPTS[1], 30)],
        2: [(PROMPTS[3], 5)],  # longer than any running prompt: the slab widens
        5: [(PROMPTS[2], 8), (PROMPTS[4], 2)],  # take the slots the ended rows left
        9: [(PROMPTS[0], 20)],
    }
    calls, made, finished = [0], [], []

    def admit(room: int) -> list[GenJob]:
        batch = [job(endless, p, n, on_finish=finished.append) for p, n in plan.get(calls[0], [])][:room]
        calls[0] += 1
        made.extend(batch)
        return batch

    monkeypatch.setattr(endless, "prefill_together", together)  # the GPU way, or the CPU way
    first = job(endless, PROMPTS[2], 40, on_finish=finished.append)
    endless.generate([first], admit=admit)
    everyone = [first, *made]
    assert len(everyone) == 7 and all(j.finish_reason == "length" for j in everyone)
    for made_job in everyone:
        assert len(made_job.ids) == made_job.max_new_tokens
        prompt = endless.decode(made_job.prompt_ids)
        monkeypatch.setattr(endless, "prefill_together", False)
        reference = alone(endless, prompt, made_job.max_new_tokens)
        assert made_job.ids == reference.ids, prompt
    # Short newcomers finished long before the first row did, not after the whole batch.
    assert finished.index(first) > finished.index(made[0])
    assert max(j.batch_rows for j in everyone) >= 3


def test_a_long_answer_outgrows_the_slab_and_stays_right(endless, monkeypatch):
    """More steps than the slab's spare columns: it is trimmed (the longest prompt has left, so
    its leading columns are free) and grown while rows run. After every step each row's live
    columns are exactly its tokens so far, in one run from its recorded start to the end."""
    from pipelines.serving import generation

    step, checked = generation._DecodeBatch.step, []

    def checked_step(batch):
        step(batch)
        for slot, row in enumerate(batch.rows):
            if row is not None:
                live = batch.mask[slot, : batch.width]
                assert int(live.sum()) == row.position
                assert bool(live[row.start :].all()) and int(live[: row.start].sum()) == 0
                checked.append(row.start)

    monkeypatch.setattr(generation._DecodeBatch, "step", checked_step)
    plan = [(PROMPTS[3], 10), (PROMPTS[0], 150), (PROMPTS[1], 90)]
    jobs = [job(endless, p, n) for p, n in plan]
    endless.generate(jobs)
    monkeypatch.undo()
    assert len(checked) > 200 and 0 in checked and max(checked) > 0
    for made, (prompt, tokens) in zip(jobs, plan, strict=True):
        assert made.ids == alone(endless, prompt, tokens).ids


def test_max_rows_holds_back_the_rest_until_a_slot_frees(endless):
    jobs = [job(endless, p, 4 + i) for i, p in enumerate(PROMPTS)]
    endless.generate(jobs, max_rows=2)
    assert max(j.batch_rows for j in jobs) == 2
    assert [j.ids for j in jobs] == [
        alone(endless, j_prompt, 4 + i).ids for i, j_prompt in enumerate(PROMPTS)
    ]


def test_a_cancelled_row_leaves_and_the_others_go_on(endless):
    gone = job(endless, PROMPTS[0], 30)
    gone.cancelled = lambda: len(gone.ids) >= 3
    stays = job(endless, PROMPTS[1], 10)
    endless.generate([gone, stays])
    assert gone.finish_reason == "cancelled" and len(gone.ids) == 3
    assert stays.ids == alone(endless, PROMPTS[1], 10).ids


def test_sampled_rows_are_reproducible_with_a_seed(generator):
    def sampled():
        jobs = [job(generator, p, 8, temperature=1.0) for p in PROMPTS[:3]]
        generator.generate(jobs, seed=7)
        return [j.ids for j in jobs]

    assert sampled() == sampled()


@pytest.mark.parametrize("prefill_together", [False, True], ids=["prefill-alone", "prefill-together"])
def test_several_adapters_share_one_batch(services, prefill_together, monkeypatch):
    """One decode batch, each row with its own adapter (or none), each as it would be alone."""
    generator = services["lora"].generator
    names = ["billing", "outdoors", None, "billing"]
    together = [job(generator, PROMPTS[i], 10, adapter=name) for i, name in enumerate(names)]
    monkeypatch.setattr(generator, "prefill_together", prefill_together)
    generator.generate(together)
    monkeypatch.setattr(generator, "prefill_together", False)
    assert max(j.batch_rows for j in together) == 4
    for i, name in enumerate(names):
        assert together[i].ids == alone(generator, PROMPTS[i], 10, adapter=name).ids, name
    assert (
        len({tuple(alone(generator, PROMPTS[0], 10, adapter=n).ids) for n in ("billing", "outdoors", None)})
        == 3
    )


def test_the_service_takes_in_requests_that_arrive_while_it_generates(services):
    from tests.pipelines.serving.test_service import HIKING_Q, INVOICE_Q

    service = services["generate"]

    def ask(query: str, tokens: int) -> ServeRequest:
        return ServeRequest(request_id="t", query=query, max_tokens=tokens, temperature=0.0)

    expected = {q: service.answer(ask(q, 10))["answer"] for q in (INVOICE_Q, HIKING_Q)}
    late = [(ask(HIKING_Q, 10), CollectingSink()), (ask(INVOICE_Q, 10), CollectingSink())]
    rooms: list[int] = []

    def admit(room: int):
        rooms.append(room)
        return late if len(rooms) == 2 else []

    class Slow(CollectingSink):
        def delta(self, text: str) -> None:  # a slow client: the batch runs long enough to join
            super().delta(text)
            time.sleep(0.01)

    first = Slow()
    request = ServeRequest(request_id="t", query=INVOICE_Q, max_tokens=10, temperature=0.0, stream=True)
    service.answer_batch([(request, first)], admit=admit, max_rows=8)
    assert rooms[0] == 7
    results = [first.unwrap(), *(sink.unwrap() for _, sink in late)]
    assert [r["answer"] for r in results] == [expected[INVOICE_Q], expected[HIKING_Q], expected[INVOICE_Q]]
    assert results[1]["timings"]["batch_size"] >= 2
    assert results[1]["sources"][0]["document"] == "hiking.md"


def test_the_engine_admits_newcomers_and_lets_another_service_go_next(service_folders):
    """While a batch decodes, a request for the same service joins it; a request for another
    service is held, the batch stops taking newcomers and drains, and the held one goes next."""
    import threading

    from pipelines.serving.engine import Job, ServeEngine
    from pipelines.serving.service import RagService
    from tests.pipelines.serving.test_service import HIKING_Q, INVOICE_Q

    def loader(key, ref):
        service = RagService.load(service_folders[ref])
        if ref == "generate":
            service.generator.eos = set()  # every answer runs to its token budget
        return service

    engine = ServeEngine(loader, cache_size=2, max_batch=8)
    order: list[str] = []
    gate, paused = threading.Event(), threading.Event()

    class Sink(CollectingSink):
        def __init__(self, name: str, hold: bool = False):
            super().__init__()
            self.name, self.hold, self.finished = name, hold, threading.Event()

        def delta(self, text: str) -> None:
            super().delta(text)
            if self.hold and not gate.is_set():
                paused.set()
                gate.wait(30)  # the batch waits here until everything below is queued
            elif self.hold:
                time.sleep(0.01)  # a slow client: the batch runs long enough for newcomers to join

        def done(self, result) -> None:
            super().done(result)
            order.append(self.name)
            self.finished.set()

    def request(query: str, tokens: int, stream: bool = False) -> ServeRequest:
        return ServeRequest(request_id="t", query=query, max_tokens=tokens, temperature=0.0, stream=stream)

    first, same, other, later = Sink("first", hold=True), Sink("same"), Sink("other"), Sink("later")
    engine.submit(Job("gen", "generate", request(INVOICE_Q, 20, stream=True), first))
    assert paused.wait(60)
    engine.submit(Job("gen", "generate", request(HIKING_Q, 4), same))
    engine.submit(Job("ext", "extractive", request(HIKING_Q, 4), other))
    engine.submit(Job("gen", "generate", request(HIKING_Q, 4), later))
    gate.set()
    for sink in (first, same, other, later):
        assert sink.finished.wait(60), sink.name
    assert first.result["usage"]["completion_tokens"] == 20
    assert same.result["timings"]["batch_size"] == 2  # it joined the running batch
    assert order.index("same") < order.index("first") < order.index("other")  # joined, then drained
    assert later.result["timings"]["batch_size"] == 1  # not admitted once another service waited
    assert engine.batches[:3] == [1, 1, 2]  # first; 'same' admitted; 'other' and 'later' together


def test_newcomers_join_a_few_at_a_time_or_after_a_short_wait():
    import queue as queues
    from types import SimpleNamespace

    from pipelines.serving import engine as serving
    from pipelines.serving.engine import Job

    def job(key: str, age: float = 0.0) -> Job:
        return Job(
            key, None, ServeRequest(request_id="t", query="q"), CollectingSink(), time.monotonic() - age
        )

    fake = SimpleNamespace(queue=queues.Queue(), _held=[], max_batch=16, batches=[])
    admit = serving._Admitter(fake, "gen")
    fake.queue.put(job("gen"))
    assert admit(room=8) == []  # one newcomer for 8 running rows: it waits for company
    fake.queue.put(job("gen"))
    assert len(admit(room=8)) == 2  # a quarter of the running rows: both join
    fake.queue.put(job("gen", age=serving.ADMIT_WAIT_S))
    assert len(admit(room=8)) == 1  # waited long enough: joins alone
    fake.queue.put(job("gen"))
    assert len(admit(room=15)) == 1  # one running row: a lone newcomer joins at once
    fake.queue.put(job("gen"))
    fake.queue.put(job("ext"))
    fake.queue.put(job("gen"))
    taken = admit(room=8)
    assert len(taken) == 1 and [j.service_key for j in fake._held] == ["ext"]  # released at once
    assert fake.queue.qsize() == 1  # nothing more taken off the queue: the batch drains
    assert admit(room=8) == []


def test_only_plain_key_value_caches_go_on_the_slab():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    from pipelines.serving.generation import _plain_kv_cache

    assert _plain_kv_cache(LlamaConfig())
    assert _plain_kv_cache(Qwen2Config(use_sliding_window=False))
    assert _plain_kv_cache(MistralConfig(sliding_window=None))
    assert not _plain_kv_cache(MistralConfig(sliding_window=4096))  # model.generate instead
    assert not _plain_kv_cache(Gemma2Config())  # alternating sliding-window layers
