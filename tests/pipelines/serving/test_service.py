"""RAG services on tiny real parts: retrieval, extractive and generated answers, batching,
streaming, cancellation, multi-LoRA routing, the engine's cache and the hosted generator."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.serving.engine import Job, ServeEngine
from pipelines.serving.protocol import CollectingSink, HostedConfig, ServeRequest, ServiceConfig, ServiceError
from pipelines.serving.service import RagService

INVOICE_Q = "How many days do I have to pay an invoice by bank transfer?"
HIKING_Q = "Where does the trail to the summit start and what should I bring?"


def ask(query: str, **kw) -> ServeRequest:
    return ServeRequest(request_id="t", query=query, **kw)


class CancelAfter(CollectingSink):
    """A client that goes away after ``n`` pieces of the answer."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def cancelled(self) -> bool:
        return len(self.deltas) >= self.n


# --- retrieval and extractive mode -------------------------------------------------------------------


def test_sources_point_at_the_right_document(services):
    service = services["extractive"]
    invoice = service.answer(ask(INVOICE_Q))
    hiking = service.answer(ask(HIKING_Q))
    assert invoice["sources"][0]["document"] == "invoices.md"
    assert hiking["sources"][0]["document"] == "hiking.md"
    top = invoice["sources"][0]
    assert set(top) >= {"document", "chunk", "score", "text"}
    assert "30 days" in top["text"]
    assert invoice["sources"][0]["score"] >= invoice["sources"][-1]["score"]


def test_extractive_mode_answers_with_passages_and_no_model(service_folders, tmp_path):
    """The pinned model does not even exist: extractive answers never load one."""
    import shutil

    folder = tmp_path / "service"
    shutil.copytree(service_folders["extractive"], folder)
    config = ServiceConfig.load(folder)
    config.model.path = str(tmp_path / "no-such-model")
    config.model.metadata = {}
    config.save(folder)
    service = RagService.load(folder)
    result = service.answer(ask(INVOICE_Q))
    assert result["mode"] == "extractive"
    assert result["answer"].startswith("[1] (invoices.md)")
    assert "30 days" in result["answer"]
    assert result["usage"]["completion_tokens"] == 0 and result["usage"]["prompt_tokens"] > 0
    assert service._generator is None


def test_score_threshold_leaves_out_weak_passages(service_folders, tmp_path):
    import shutil

    folder = tmp_path / "strict"
    shutil.copytree(service_folders["extractive"], folder)
    config = ServiceConfig.load(folder)
    config.score_threshold = 0.99
    config.save(folder)
    result = RagService.load(folder).answer(ask("completely unrelated: quantum chromodynamics"))
    assert result["sources"] == []
    assert "could not find" in result["answer"]


# --- generation ----------------------------------------------------------------------------------------


def test_generate_answers_with_usage(services):
    result = services["generate"].answer(ask(INVOICE_Q, max_tokens=8, temperature=0.0))
    assert result["mode"] == "generate"
    assert isinstance(result["answer"], str)
    assert result["usage"]["prompt_tokens"] > 10
    assert 1 <= result["usage"]["completion_tokens"] <= 8 or result["finish_reason"] == "stop"
    assert result["finish_reason"] in ("stop", "length")
    assert result["sources"][0]["document"] == "invoices.md"


def test_a_request_cannot_exceed_the_service_limit(services):
    result = services["generate"].answer(ask(INVOICE_Q, max_tokens=4000, temperature=0.0))
    assert result["usage"]["completion_tokens"] <= 24  # the service's max_tokens


def test_streamed_pieces_make_the_answer(services):
    sink = CollectingSink()
    services["generate"].answer(ask(HIKING_Q, max_tokens=12, temperature=0.0, stream=True), sink)
    assert sink.deltas
    assert "".join(sink.deltas).strip() == sink.result["answer"]


def test_a_batch_answers_each_request_as_alone(services):
    """Left-padded batches must not change a greedy answer; each row keeps its own limits."""
    service = services["generate"]
    alone = [service.answer(ask(q, max_tokens=10, temperature=0.0)) for q in (INVOICE_Q, HIKING_Q)]
    sinks = [CollectingSink() for _ in range(4)]
    requests = [
        ask(INVOICE_Q, max_tokens=10, temperature=0.0),
        ask(HIKING_Q, max_tokens=10, temperature=0.0),
        ask(INVOICE_Q, max_tokens=3, temperature=1.0),
        ask("llamas?", max_tokens=5, temperature=0.7),
    ]
    service.answer_batch(list(zip(requests, sinks, strict=True)))
    results = [s.unwrap() for s in sinks]
    assert [r["answer"] for r in results[:2]] == [a["answer"] for a in alone]
    assert all(r["timings"]["batch_size"] == 4 for r in results)
    assert results[2]["usage"]["completion_tokens"] <= 3
    assert results[3]["usage"]["completion_tokens"] <= 5


def test_a_client_that_leaves_stops_its_generation(services):
    sink = CancelAfter(2)
    services["generate"].answer(ask(INVOICE_Q, max_tokens=24, temperature=0.0, stream=True), sink)
    if sink.result["finish_reason"] == "stop":  # the model ended on its own before the cancel
        assert sink.result["usage"]["completion_tokens"] <= 3
    else:
        assert sink.result["finish_reason"] == "cancelled"
        assert sink.result["usage"]["completion_tokens"] <= 4


# --- multi-LoRA ----------------------------------------------------------------------------------------


def test_routing_picks_the_adapter_whose_description_is_closest(services):
    service = services["lora"]
    invoice = service.answer(ask(INVOICE_Q, temperature=0.0))
    hiking = service.answer(ask(HIKING_Q, temperature=0.0))
    assert invoice["adapter"] == "billing"
    assert hiking["adapter"] == "outdoors"
    # The routed answer is the answer of that adapter, not just its name.
    assert invoice["answer"] == service.answer(ask(INVOICE_Q, temperature=0.0, adapter="billing"))["answer"]
    assert hiking["answer"] == service.answer(ask(HIKING_Q, temperature=0.0, adapter="outdoors"))["answer"]


def test_adapters_change_answers_and_switch_without_reloading(services):
    service = services["lora"]
    model = service.generator.model
    answers = {
        name: service.answer(ask(INVOICE_Q, temperature=0.0, adapter=name))["answer"]
        for name in ("billing", "outdoors", "base")
    }
    assert len(set(answers.values())) == 3, answers
    assert service.generator.model is model  # one base model, adapters switched in place
    base = service.answer(ask(INVOICE_Q, temperature=0.0, adapter="base"))
    assert base["adapter"] is None and base["answer"] == answers["base"]


def test_a_mixed_batch_is_grouped_by_adapter(services):
    service = services["lora"]
    sinks = [CollectingSink() for _ in range(3)]
    requests = [
        ask(INVOICE_Q, temperature=0.0),
        ask(HIKING_Q, temperature=0.0),
        ask(INVOICE_Q, temperature=0.0),
    ]
    service.answer_batch(list(zip(requests, sinks, strict=True)))
    results = [s.unwrap() for s in sinks]
    assert [r["adapter"] for r in results] == ["billing", "outdoors", "billing"]
    assert results[0]["answer"] == results[2]["answer"]


def test_an_unknown_adapter_is_that_requests_error(services):
    sink = CollectingSink()
    services["lora"].answer(ask(INVOICE_Q, adapter="nope"), sink)
    assert sink.failure[0] == 422 and "adapter" in sink.failure[1]


# --- the engine ----------------------------------------------------------------------------------------


def test_engine_batches_waiting_requests_and_keeps_services_warm(service_folders):
    loads = []

    def loader(key, ref):
        loads.append(key)
        return RagService.load(service_folders[ref])

    engine = ServeEngine(loader, cache_size=1, max_batch=16)
    sinks = [CollectingSink() for _ in range(10)]
    done = threading.Event()
    for number, sink in enumerate(sinks):
        original = sink.done

        def finish(result, original=original):
            original(result)
            if all(s.result or s.failure for s in sinks):
                done.set()

        sink.done = finish
        engine.submit(
            Job("gen", "generate", ask(f"{INVOICE_Q} {number}", max_tokens=4, temperature=0.0), sink)
        )
    assert done.wait(120)
    assert all(s.result for s in sinks)
    assert max(engine.batches) > 1  # requests that waited were answered together
    assert loads == ["gen"]
    # A second service evicts the first (cache of one); asking the first again reloads it.
    for key in ("ext", "gen"):
        sink = CollectingSink()
        event = threading.Event()
        sink.done = lambda result, s=sink, e=event: (CollectingSink.done(s, result), e.set())
        engine.submit(
            Job(key, "extractive" if key == "ext" else "generate", ask(INVOICE_Q, max_tokens=2), sink)
        )
        assert event.wait(60)
    assert loads == ["gen", "ext", "gen"]
    assert engine.cache.keys() == ["gen"]


def test_engine_reports_a_service_that_cannot_load():
    def loader(key, ref):
        raise ServiceError("broken on purpose")

    engine = ServeEngine(loader)
    sink = CollectingSink()
    event = threading.Event()
    sink.error = lambda status, message: (CollectingSink.error(sink, status, message), event.set())
    engine.submit(Job("x", None, ask("q"), sink))
    assert event.wait(10)
    assert sink.failure[0] == 500 and "broken on purpose" in sink.failure[1]


# --- hosted generator -----------------------------------------------------------------------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    """A real HTTP server speaking the chat-completions streaming protocol."""

    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("Pay within ", "30 days."):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": 5}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_openai():
    _FakeOpenAI.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_a_hosted_model_writes_the_answer_from_local_passages(services, fake_openai):
    hosted = HostedConfig(base_url=fake_openai, model="gpt-test", api_key="sk-secret")
    sink = CollectingSink()
    services["generate"].answer(ask(INVOICE_Q, stream=True, max_tokens=20, hosted=hosted), sink)
    result = sink.unwrap()
    assert result["answer"] == "Pay within 30 days."
    assert "".join(sink.deltas) == "Pay within 30 days."
    assert result["usage"] == {"prompt_tokens": 42, "completion_tokens": 5}
    assert result["mode"] == "hosted"
    request = _FakeOpenAI.seen[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-secret"
    assert request["body"]["model"] == "gpt-test" and request["body"]["max_tokens"] == 20
    assert "30 days" in request["body"]["messages"][0]["content"]  # the retrieved passage is in the prompt


def test_an_unreachable_hosted_model_is_a_502(services):
    hosted = HostedConfig(base_url="http://127.0.0.1:9/v1", model="x", timeout_s=2)
    sink = CollectingSink()
    services["generate"].answer(ask(INVOICE_Q, hosted=hosted), sink)
    assert sink.failure[0] == 502


# --- quantized models --------------------------------------------------------------------------------


def test_a_quantized_model_is_served_through_the_quantize_loader(parts, tmp_path):
    """The quantize node's output (quantization_config.json + packed weights) loads with its own
    loader and answers; the plain transformers loader could not read those weights."""
    from pipelines.context import ArtifactRef
    from pipelines.nodes.quantize.run import run as quantize
    from pipelines.nodes.quantize.spec import QuantizeParams
    from pipelines.types import ArtifactType
    from tests.pipelines.serving import toys

    model = ArtifactRef(
        ArtifactType.MODEL, None, {"name": "tiny", "model_path": str(parts["model"])}, key="m"
    )
    out = quantize(
        toys.ToyContext(tmp_path / "q"),
        {"model": model},
        QuantizeParams.model_validate({"method": "int8_symmetric", "calibration_samples": 8}),
    )["model"]
    assert (out.path / "quantization_config.json").is_file()
    folder = toys.build_service(
        tmp_path / "svc",
        model=out.path,
        index=parts["index"],
        mode="generate",
        max_tokens=6,
        temperature=0.0,
        model_metadata=out.metadata,
    )
    assert ServiceConfig.load(folder).model.quantized
    service = RagService.load(folder)
    result = service.answer(ask(INVOICE_Q, max_tokens=6, temperature=0.0))
    assert result["mode"] == "generate" and result["usage"]["completion_tokens"] >= 1
    assert type(service.generator.model).__name__ != "NoneType"
    assert any("Quant" in type(m).__name__ for m in service.generator.model.modules())
