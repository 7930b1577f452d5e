// Live run state on the builder canvas (EVENTS.md): after Run (the builder dispatches
// "llmops:run-started"), or on load when the pipeline has a run in progress, follow
// /ws/runs/<id>/?format=json and paint each node through window.LLMOpsBuilder.setNodeState.
(function () {
  "use strict";
  const TERMINAL = ["succeeded", "failed", "cancelled"];
  let socket = null, runId = null, lastSeq = 0, finished = false, retries = 0, timer = null;
  const states = {};

  function builder() { return window.LLMOpsBuilder; }

  function apply(event) {
    if (!event.node) {
      if (event.type === "run" && TERMINAL.indexOf(event.status) >= 0) finished = true;
      return;
    }
    if (event.type === "log" || event.type === "metric") return;
    const st = states[event.node] || (states[event.node] = {});
    if (event.status) st.status = event.status;
    if ("progress" in event) st.progress = event.progress;
    if (event.type === "started" || event.type === "queued") st.progress = null;
    // Only progress events carry an estimate; any state change ends the previous one.
    st.eta_s = event.type === "progress" && event.eta_s != null ? event.eta_s : null;
    if (event.message != null) st.message = event.message;
    if (builder()) builder().setNodeState(event.node, Object.assign({}, st));
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(proto + location.host + "/ws/runs/" + runId + "/?format=json&after=" + lastSeq);
    const mine = socket;
    socket.onopen = function () { retries = 0; };
    socket.onmessage = function (msg) {
      let event;
      try { event = JSON.parse(msg.data); } catch (e) { return; }
      if (event.seq <= lastSeq) return;  // seen already (the server sends each once; belt and braces)
      lastSeq = event.seq;
      apply(event);
      if (finished) mine.close(1000);
    };
    socket.onclose = function (e) {
      if (mine !== socket || finished || e.code === 4401 || e.code === 4403) return;
      retries += 1;
      timer = setTimeout(connect, Math.min(10000, 500 * Math.pow(2, Math.min(retries, 5))));
    };
  }

  function watch(id) {
    if (socket) { const old = socket; socket = null; old.close(1000); }
    clearTimeout(timer);
    runId = id; lastSeq = 0; finished = false; retries = 0;
    Object.keys(states).forEach(function (k) { delete states[k]; });
    if (builder() && builder().clearNodeStates) builder().clearNodeStates();
    connect();
  }

  window.LLMOpsRunLive = { watch: watch };
  window.addEventListener("llmops:run-started", function (e) { if (e.detail && e.detail.id) watch(e.detail.id); });

  // On load: resume a run of this pipeline that is still going.
  document.addEventListener("DOMContentLoaded", function () {
    const b = builder();
    if (!b || !b.pipelineId) return;
    fetch("/api/v1/runs?limit=1&pipeline=" + encodeURIComponent(b.pipelineId), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (runs) {
        if (runs.length && TERMINAL.indexOf(runs[0].status) < 0 && runId === null) watch(runs[0].id);
      })
      .catch(function () { /* no live state: the canvas still works */ });
  });
})();
