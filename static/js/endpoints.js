// Endpoint page: streaming playground with sources and feedback, snippet tabs, usage charts.
(function () {
  "use strict";

  const configNode = document.getElementById("ep-config-data");
  if (!configNode) return;
  const config = JSON.parse(configNode.textContent);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  // --- playground ------------------------------------------------------------------------------
  const chat = document.getElementById("ep-chat");
  const form = document.getElementById("ep-ask");

  function addMessage(kind, text) {
    const empty = chat.querySelector(".ep-chat-empty");
    if (empty) empty.remove();
    const message = el("div", { class: "ep-msg " + kind }, [el("div", { class: "ep-text", text: text || "" })]);
    chat.appendChild(message);
    chat.scrollTop = chat.scrollHeight;
    return message;
  }

  function renderSources(sources) {
    if (!sources || !sources.length) return el("div", { class: "ep-sources muted", text: "No passages matched." });
    const list = el("ol");
    sources.forEach((source) => {
      list.appendChild(el("li", {}, [
        el("span", { class: "ep-doc", text: source.document + (source.page ? " (page " + source.page + ")" : "") }),
        el("span", { class: "ep-score", text: "score " + Number(source.score).toFixed(2) }),
        el("span", { class: "ep-passage", text: (source.text || "").slice(0, 400) }),
      ]));
    });
    const details = el("details", { class: "ep-sources" }, [el("summary", { text: sources.length + " source(s)" }), list]);
    details.open = true;
    return details;
  }

  function renderRating(question, result) {
    const comment = el("input", { type: "text", placeholder: "Optional comment", "aria-label": "Comment", maxlength: "2000" });
    const status = el("span", { class: "help" });
    const up = el("button", { type: "button", class: "small", "aria-pressed": "false", title: "Good answer", text: "👍" });
    const down = el("button", { type: "button", class: "small", "aria-pressed": "false", title: "Bad answer", text: "👎" });
    function send(rating, button) {
      window.llmopsFetch(config.feedback, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rating: rating, request_id: result.id, question: question, answer: result.answer,
          sources: result.sources, comment: comment.value }),
      }).then((response) => {
        if (!response.ok) throw new Error("HTTP " + response.status);
        [up, down].forEach((b) => b.setAttribute("aria-pressed", b === button ? "true" : "false"));
        status.textContent = "Thanks, saved.";
      }).catch((error) => { status.textContent = "Could not save: " + error.message; });
    }
    up.addEventListener("click", () => send(1, up));
    down.addEventListener("click", () => send(-1, down));
    return el("div", { class: "ep-rate" }, [up, down, comment, status]);
  }

  function finish(message, question, result) {
    message.classList.remove("pending");
    message.querySelector(".ep-text").textContent = result.answer || "(empty answer)";
    const usage = result.usage || {};
    const info = [Math.round(result.latency_ms) + " ms", (usage.prompt_tokens || 0) + " → " + (usage.completion_tokens || 0) + " tokens"];
    if (result.adapter) info.push("adapter " + result.adapter);
    if (result.mode) info.push(result.mode);
    message.appendChild(el("div", { class: "ep-info", text: info.join(" · ") }));
    message.appendChild(renderSources(result.sources));
    message.appendChild(renderRating(question, result));
    chat.scrollTop = chat.scrollHeight;
  }

  function fail(message, text) {
    message.classList.remove("pending");
    message.classList.add("error");
    message.querySelector(".ep-text").textContent = text;
  }

  async function readStream(response, message, question) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const text = message.querySelector(".ep-text");
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (!data || data === "[DONE]") continue;
        const event = JSON.parse(data);
        if (event.type === "delta") { text.textContent += event.text; chat.scrollTop = chat.scrollHeight; }
        else if (event.type === "done") finish(message, question, event);
        else if (event.type === "error") fail(message, event.detail || "The endpoint failed.");
      }
    }
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const question = String(data.get("query") || "").trim();
      if (!question) return;
      const body = { query: question, stream: true };
      if (data.get("max_tokens")) body.max_tokens = Number(data.get("max_tokens"));
      if (data.get("temperature") !== null && data.get("temperature") !== "") body.temperature = Number(data.get("temperature"));
      if (data.get("adapter")) body.adapter = String(data.get("adapter"));
      addMessage("question", question);
      const message = addMessage("answer pending", "");
      form.querySelector("textarea").value = "";
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const response = await window.llmopsFetch(config.playground, {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        if (!response.ok) {
          const error = await response.json().catch(() => ({}));
          fail(message, (error.detail || "HTTP " + response.status) + (response.status === 503 ? " (no serve worker is running)" : ""));
        } else {
          await readStream(response, message, question);
        }
      } catch (error) {
        fail(message, "Network error: " + error.message);
      } finally {
        button.disabled = false;
      }
    });
    form.querySelector("textarea").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
    });
  }

  // --- snippets and copy buttons -------------------------------------------------------------
  // Delegated: the snippets are replaced (htmx out-of-band swap) when a key is created.
  document.addEventListener("click", (event) => {
    const tab = event.target.closest(".ep-tabs button");
    if (!tab) return;
    document.querySelectorAll(".ep-tabs button").forEach((t) => t.setAttribute("aria-selected", t === tab ? "true" : "false"));
    document.querySelectorAll(".ep-snippet").forEach((panel) => { panel.hidden = panel.dataset.panel !== tab.dataset.tab; });
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".ep-copy");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(() => {
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1200);
    });
  });

  // --- usage charts ------------------------------------------------------------------------------
  const charts = {};
  function chart(id, datasets, labels) {
    const canvas = document.getElementById(id);
    if (!canvas || !window.Chart) return;
    if (charts[id]) {
      charts[id].data.labels = labels;
      charts[id].data.datasets.forEach((set, i) => { set.data = datasets[i].data; });
      charts[id].update("none");
      return;
    }
    charts[id] = new window.Chart(canvas, {
      type: datasets[0].type || "line",
      data: { labels: labels, datasets: datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, spanGaps: true,
        plugins: { legend: { display: datasets.length > 1, labels: { boxWidth: 12 } } },
        scales: { x: { ticks: { maxTicksLimit: 6 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }

  function loadUsage() {
    fetch(config.usage, { credentials: "same-origin" }).then((r) => r.json()).then((usage) => {
      chart("chart-requests", [{ type: "bar", label: "requests", data: usage.requests, backgroundColor: "#3b5bdb" }], usage.labels);
      chart("chart-latency", [
        { label: "p50", data: usage.p50_ms, borderColor: "#3b5bdb", backgroundColor: "#3b5bdb", pointRadius: 2 },
        { label: "p95", data: usage.p95_ms, borderColor: "#b7791f", backgroundColor: "#b7791f", pointRadius: 2 },
      ], usage.labels);
      chart("chart-errors", [{ type: "bar", label: "errors", data: usage.errors, backgroundColor: "#c92a2a" }], usage.labels);
      const totals = document.getElementById("ep-usage-totals");
      if (totals) {
        totals.textContent = usage.total + " requests in the last " + usage.minutes + " min · " + usage.total_errors +
          " errors" + (usage.p50_all_ms !== null ? " · p50 " + usage.p50_all_ms + " ms · p95 " + usage.p95_all_ms + " ms" : "");
      }
    }).catch(() => {});
  }
  window.addEventListener("load", () => { loadUsage(); setInterval(loadUsage, 30000); });
})();
