// The pipeline builder: a Drawflow canvas kept in sync with our graph JSON.
//
// Drawflow numbers its nodes (1, 2, 3…); our graph names them ("docs", "index"). Each Drawflow
// node keeps {nodeId, kind, params, label, ports} in its data, so the graph JSON is rebuilt from
// the canvas at any time (toGraph) and a saved graph is drawn back with loadGraph.
// Wires are type-checked here as they are drawn (a wrong one is removed at once, with the
// reason) and again on the server by /validate and on save.
(function () {
  "use strict";

  const TYPE_COLORS = {
    Documents: "#2f9e44", Dataset: "#e8590c", Model: "#3b5bdb", Adapter: "#ae3ec9",
    VectorIndex: "#0c8599", Service: "#d6336c", Endpoint: "#343a40", Report: "#868e96",
  };
  const TYPE_HELP = {
    Documents: "your documents", Dataset: "examples to learn from", Model: "a language model",
    Adapter: "fine-tuned LoRA weights", VectorIndex: "a search index over documents",
    Service: "a running question-answering service", Endpoint: "a published API", Report: "measurements",
  };
  // What produces each artifact type (the server's validation says the same).
  const PRODUCERS = {
    Documents: "a Documents source", Dataset: "a Dataset source", Model: "a Base model or a Quantize step",
    Adapter: "a Fine-tune step", VectorIndex: "a Search index step", Service: "a Q&A service step",
    Endpoint: "a Publish API step", Report: "a Fine-tune, Quantize or Evaluate step",
  };
  const ID_BASES = {
    "source.documents": "docs", "source.dataset": "data", "source.model": "model",
    "vectorize.faiss": "index", "quantize": "quantize", "train.lora": "lora", "evaluate": "eval",
    "serve.rag": "rag", "publish.api": "api",
  };
  const STATUS_LABELS = {
    queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed", cancelled: "Cancelled",
    skipped: "Skipped", cached: "Reused",
  };

  const S = {
    config: null, specs: {}, editor: null, dfToNode: {}, nodeToDf: {},
    dirty: false, loading: false, suppressRemoved: 0, selected: null,
    report: null, validateSeq: 0, validateTimer: null, saving: false, formPending: 0, toastTimer: null,
  };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const esc = (text) => String(text == null ? "" : text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  // --- canvas <-> graph ---------------------------------------------------------------------

  function home() { return S.editor.drawflow.drawflow.Home.data; }
  function nodeData(dfId) { const n = home()[dfId]; return n ? n.data : null; }
  function nodeEl(dfId) { return document.getElementById("node-" + dfId); }
  function portIndex(cls) { return parseInt(String(cls).split("_")[1], 10) - 1; }

  function portsFor(kind, edges, nodeId) {
    const spec = S.specs[kind];
    if (spec) return { inputs: spec.inputs, outputs: spec.outputs };
    // Unknown kind (removed, or from another installation): keep the ports its wires use so a
    // save does not silently drop them; validation reports the kind.
    const ins = [], outs = [];
    (edges || []).forEach((e) => {
      if (e.to && e.to[0] === nodeId && !ins.some((p) => p.name === e.to[1])) ins.push({ name: e.to[1], label: e.to[1], type: null });
      if (e.from && e.from[0] === nodeId && !outs.some((p) => p.name === e.from[1])) outs.push({ name: e.from[1], label: e.from[1], type: null });
    });
    return { inputs: ins, outputs: outs };
  }

  function uniqueId(kind) {
    const base = ID_BASES[kind] || (kind.split(".").pop() || "node").replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 40);
    if (!S.nodeToDf[base]) return base;
    for (let i = 2; ; i++) { if (!S.nodeToDf[base + "_" + i]) return base + "_" + i; }
  }

  function nodeHtml(data) {
    const spec = S.specs[data.kind];
    const rows = Math.max(data.ports.inputs.length, data.ports.outputs.length);
    let portRows = "";
    for (let i = 0; i < rows; i++) {
      const a = data.ports.inputs[i], b = data.ports.outputs[i];
      portRows += '<div class="port-row">' +
        (a ? '<span class="port-label in" title="' + esc(portTitle(a, "input")) + '">' + esc(a.label || a.name) +
          (a.required === false ? ' <i class="opt">optional</i>' : "") + "</span>" : "<span></span>") +
        (b ? '<span class="port-label out" title="' + esc(portTitle(b, "output")) + '">' + esc(b.label || b.name) + "</span>" : "<span></span>") +
        "</div>";
    }
    const title = spec ? spec.label : "Unknown step";
    return '<div class="node-head"><span class="node-icon">' + esc(spec ? spec.icon : "❓") + "</span>" +
      '<span class="node-title">' + esc(data.label || title) + "</span></div>" +
      '<div class="node-sub"><code>' + esc(data.nodeId) + "</code>" + (spec ? "" : " · " + esc(data.kind)) + "</div>" +
      '<div class="node-ports">' + portRows + "</div>" +
      '<div class="node-state" hidden></div><div class="node-issues" hidden></div>';
  }

  function portTitle(port, side) {
    if (!port.type) return port.name + " (" + side + ")";
    return port.type + " " + side + ": " + (TYPE_HELP[port.type] || port.type) +
      (side === "input" && port.multiple ? " (takes several wires)" : "") +
      (side === "input" && port.required === false ? " (optional)" : "");
  }

  function decorateNode(dfId, data) {
    const el = nodeEl(dfId);
    if (!el) return;
    el.dataset.nodeId = data.nodeId;
    el.dataset.kind = data.kind;
    const mark = (sel, ports, side) => el.querySelectorAll(sel).forEach((dot, i) => {
      const p = ports[i];
      if (!p) return;
      dot.dataset.port = p.name;
      dot.dataset.type = p.type || "";
      dot.title = portTitle(p, side);
      dot.style.setProperty("--port-color", TYPE_COLORS[p.type] || "#adb5bd");
      if (side === "input" && p.required === false) dot.classList.add("optional");
    });
    mark(".inputs .input", data.ports.inputs, "input");
    mark(".outputs .output", data.ports.outputs, "output");
  }

  function addNode(kind, x, y, opts) {
    opts = opts || {};
    const spec = S.specs[kind];
    const nodeId = opts.id || uniqueId(kind);
    const params = opts.params || (spec ? JSON.parse(JSON.stringify(spec.defaults || {})) : {});
    const data = { nodeId: nodeId, kind: kind, params: params, ports: portsFor(kind, opts.edges, nodeId) };
    if (opts.label) data.label = opts.label;
    const dfId = S.editor.addNode(kind, data.ports.inputs.length, data.ports.outputs.length,
      Math.round(x), Math.round(y), "llm-node" + (spec ? "" : " unknown-kind"), data, nodeHtml(data));
    S.dfToNode[dfId] = nodeId;
    S.nodeToDf[nodeId] = dfId;
    decorateNode(dfId, data);
    return dfId;
  }

  function toGraph() {
    const nodes = [], edges = [];
    const data = home();
    Object.keys(data).forEach((dfId) => {
      const n = data[dfId], d = n.data;
      const node = { id: d.nodeId, kind: d.kind, params: d.params || {}, position: [Math.round(n.pos_x), Math.round(n.pos_y)] };
      if (d.label) node.label = d.label;
      nodes.push(node);
      Object.keys(n.outputs).forEach((outCls) => {
        const outPort = d.ports.outputs[portIndex(outCls)];
        n.outputs[outCls].connections.forEach((c) => {
          const target = data[c.node];
          if (!target || !outPort) return;
          const inPort = target.data.ports.inputs[portIndex(c.output)];
          if (inPort) edges.push({ from: [d.nodeId, outPort.name], to: [target.data.nodeId, inPort.name] });
        });
      });
    });
    return { version: 1, nodes: nodes, edges: edges };
  }

  function loadGraph(graph) {
    S.loading = true;
    S.editor.clear();
    S.dfToNode = {};
    S.nodeToDf = {};
    let dropped = 0;
    try {
      (graph.nodes || []).forEach((n) => {
        const pos = n.position || [0, 0];
        addNode(n.kind, pos[0], pos[1], { id: n.id, params: n.params || {}, label: n.label, edges: graph.edges });
      });
      (graph.edges || []).forEach((e) => {
        const a = S.nodeToDf[e.from[0]], b = S.nodeToDf[e.to[0]];
        const oi = a ? nodeData(a).ports.outputs.findIndex((p) => p.name === e.from[1]) : -1;
        const ii = b ? nodeData(b).ports.inputs.findIndex((p) => p.name === e.to[1]) : -1;
        if (oi < 0 || ii < 0) { dropped++; return; }
        S.editor.addConnection(a, b, "output_" + (oi + 1), "input_" + (ii + 1));
        colourWire(a, b, "output_" + (oi + 1), "input_" + (ii + 1));
      });
    } finally {
      S.loading = false;
    }
    updateHint();
    if (dropped) status(dropped + " wire(s) named ports that do not exist and were left out.", "warn");
  }

  function colourWire(outDf, inDf, outCls, inCls) {
    const svg = S.editor.container.querySelector(
      ".connection.node_in_node-" + inDf + ".node_out_node-" + outDf + "." + outCls + "." + inCls);
    const port = nodeData(outDf).ports.outputs[portIndex(outCls)];
    if (svg && port) {
      svg.classList.add("type-" + port.type);
      svg.querySelectorAll("path").forEach((p) => { p.style.stroke = TYPE_COLORS[port.type] || ""; });
    }
  }

  // --- connection rules (the server checks the same with check_connection) ------------------

  function reaches(fromDf, targetDf) {
    const seen = new Set(), todo = [String(fromDf)];
    while (todo.length) {
      const id = todo.pop();
      if (id === String(targetDf)) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      const n = home()[id];
      if (!n) continue;
      Object.values(n.outputs).forEach((o) => o.connections.forEach((c) => todo.push(String(c.node))));
    }
    return false;
  }

  function refusal(info) {
    const src = nodeData(info.output_id), dst = nodeData(info.input_id);
    const out = src.ports.outputs[portIndex(info.output_class)];
    const inp = dst.ports.inputs[portIndex(info.input_class)];
    const dstLabel = (S.specs[dst.kind] || {}).label || dst.kind;
    if (!out || !inp) return "These ports do not exist.";
    if (out.type && inp.type && out.type !== inp.type) {
      return article(out.type) + " " + out.type + " output cannot feed " + article(inp.type).toLowerCase() + " " +
        inp.type + " input. “" + dstLabel + "” needs " + (TYPE_HELP[inp.type] || inp.type) + " here: connect " +
        (PRODUCERS[inp.type] || "an output of that type") + " (dots of the same colour).";
    }
    const wires = home()[info.input_id].inputs[info.input_class].connections.length;
    if (wires > 1 && !inp.multiple) {
      return "The " + (inp.label || inp.name) + " input of “" + dstLabel + "” already has a wire and takes only one. " +
        "Click the old wire and press Delete first.";
    }
    if (reaches(info.input_id, info.output_id)) {
      return "That wire would make a loop: a step cannot feed itself, even through other steps.";
    }
    return null;
  }

  function article(word) { return /^[AEIOU]/.test(word) ? "An" : "A"; }

  function onConnectionCreated(info) {
    if (S.loading) return;
    const why = refusal(info);
    if (why) {
      S.suppressRemoved++;
      S.editor.removeSingleConnection(info.output_id, info.input_id, info.output_class, info.input_class);
      toast(why);
      status("Wire refused: " + why, "error");
      return;
    }
    colourWire(info.output_id, info.input_id, info.output_class, info.input_class);
    changed("Connected.");
  }

  // --- palette ------------------------------------------------------------------------------

  function renderPalette() {
    const root = $("#palette-groups");
    root.innerHTML = "";
    S.config.palette.forEach((group) => {
      const section = document.createElement("section");
      section.className = "palette-group";
      section.innerHTML = "<h4>" + esc(group.category) + "</h4>";
      group.kinds.forEach((spec) => {
        const item = document.createElement("div");
        item.className = "palette-item";
        item.draggable = S.config.canEdit;
        item.tabIndex = 0;
        item.dataset.kind = spec.kind;
        item.title = spec.help;
        const ports = (list) => list.map((p) => '<i class="dot" style="--port-color:' + (TYPE_COLORS[p.type] || "#adb5bd") +
          '" title="' + esc(p.type) + '"></i>').join("");
        item.innerHTML = '<span class="node-icon">' + esc(spec.icon) + '</span><span class="palette-text"><strong>' +
          esc(spec.label) + "</strong><small>" + esc(spec.description) + '</small></span><span class="palette-ports">' +
          ports(spec.inputs) + (spec.inputs.length && spec.outputs.length ? "→" : "") + ports(spec.outputs) + "</span>";
        item.addEventListener("dragstart", (ev) => {
          ev.dataTransfer.setData("application/x-llmops-kind", spec.kind);
          ev.dataTransfer.setData("text/plain", spec.kind);
          ev.dataTransfer.effectAllowed = "copy";
        });
        item.addEventListener("click", () => addFromPalette(spec.kind));
        item.addEventListener("keydown", (ev) => { if (ev.key === "Enter") addFromPalette(spec.kind); });
        section.appendChild(item);
      });
      root.appendChild(section);
    });
    $("#palette-search").addEventListener("input", (ev) => {
      const q = ev.target.value.trim().toLowerCase();
      root.querySelectorAll(".palette-item").forEach((el) => {
        el.hidden = q && !el.textContent.toLowerCase().includes(q) && !el.dataset.kind.includes(q);
      });
      root.querySelectorAll(".palette-group").forEach((g) => {
        g.hidden = !g.querySelector(".palette-item:not([hidden])");
      });
    });
  }

  function renderLegend() {
    const used = new Set();
    Object.values(S.specs).forEach((s) => s.inputs.concat(s.outputs).forEach((p) => used.add(p.type)));
    $("#legend").innerHTML = Array.from(used).map((t) => '<span title="' + esc(TYPE_HELP[t] || t) +
      '"><i class="dot" style="--port-color:' + (TYPE_COLORS[t] || "#adb5bd") + '"></i>' + esc(t) + "</span>").join("");
  }

  function canvasPoint(clientX, clientY) {
    const rect = S.editor.precanvas.getBoundingClientRect();
    return { x: (clientX - rect.x) / S.editor.zoom, y: (clientY - rect.y) / S.editor.zoom };
  }

  function addFromPalette(kind, clientX, clientY) {
    if (!S.config.canEdit) return;
    let p;
    if (clientX == null) {
      p = freeSpot();
    } else {
      p = canvasPoint(clientX, clientY);
      p.x -= 20; p.y -= 20;
    }
    const dfId = addNode(kind, p.x, p.y);
    updateHint();
    selectNode(dfId);
    ensureVisible(dfId);
    changed("Added “" + S.specs[kind].label + "”. Connect its dots to other steps.");
  }

  // Where a clicked palette item lands: the first spot near the middle of the view that does
  // not cover a node (scanning outwards row by row), so new nodes never hide old ones.
  function freeSpot() {
    const wrap = S.editor.container.getBoundingClientRect();
    const c = canvasPoint(wrap.x + wrap.width / 2, wrap.y + wrap.height / 2);
    const W = 224, H = 150, GAP = 30;
    const boxes = Object.keys(home()).map((id) => {
      const n = home()[id], el = nodeEl(id);
      return [n.pos_x, n.pos_y, n.pos_x + (el ? el.offsetWidth : W), n.pos_y + (el ? el.offsetHeight : H)];
    });
    const free = (x, y) => boxes.every((b) => x + W + GAP < b[0] || x > b[2] + GAP || y + H + GAP < b[1] || y > b[3] + GAP);
    for (let ring = 0; ring < 12; ring++) {
      for (let dy = -ring; dy <= ring; dy++) {
        for (let dx = -ring; dx <= ring; dx++) {
          if (Math.max(Math.abs(dx), Math.abs(dy)) !== ring) continue;
          const x = c.x - W / 2 + dx * (W + GAP), y = c.y - H / 2 + dy * (H + GAP);
          if (free(x, y)) return { x: x, y: y };
        }
      }
    }
    return { x: c.x - W / 2, y: c.y - H / 2 };
  }

  function setupDrop() {
    const wrap = $("#canvas-wrap");
    wrap.addEventListener("dragover", (ev) => { ev.preventDefault(); ev.dataTransfer.dropEffect = "copy"; });
    wrap.addEventListener("drop", (ev) => {
      ev.preventDefault();
      const kind = ev.dataTransfer.getData("application/x-llmops-kind") || ev.dataTransfer.getData("text/plain");
      if (S.specs[kind]) addFromPalette(kind, ev.clientX, ev.clientY);
    });
  }

  // --- selection and the settings panel -----------------------------------------------------

  function selectNode(dfId) {
    document.querySelectorAll(".drawflow-node.selected").forEach((el) => el.classList.remove("selected"));
    const el = nodeEl(dfId);
    if (!el) return;
    el.classList.add("selected");
    S.editor.node_selected = el;
    S.editor.dispatch("nodeSelected", String(dfId));
  }

  function openInspector(dfId) {
    const data = nodeData(dfId);
    if (!data) return;
    S.selected = String(dfId);
    const spec = S.specs[data.kind];
    $("#inspector-empty").hidden = true;
    $("#inspector-node").hidden = false;
    $("#inspector-icon").textContent = spec ? spec.icon : "❓";
    $("#inspector-label").textContent = spec ? spec.label : "Unknown step (" + data.kind + ")";
    $("#inspector-id").textContent = data.nodeId;
    $("#inspector-help").textContent = spec ? spec.help : "This kind of step is not available here. Delete it or replace it.";
    renderNodeIssues();
    const target = $("#node-form");
    if (!spec) { target.innerHTML = ""; return; }
    const qs = new URLSearchParams({ kind: data.kind, node: data.nodeId, params: JSON.stringify(data.params || {}) });
    target.innerHTML = '<p class="muted">Loading…</p>';
    window.htmx.ajax("GET", S.config.urls.nodeForm + "?" + qs.toString(), { target: "#node-form", swap: "innerHTML" })
      .then(() => {
        const form = $("#node-form form.node-form");
        bindForm(form);
        // A slow answer for a node selected earlier: load the form of the node selected now.
        const current = S.selected && nodeData(S.selected);
        if (form && current && form.dataset.node !== current.nodeId) openInspector(S.selected);
      });
  }

  function closeInspector() {
    S.selected = null;
    $("#inspector-empty").hidden = false;
    $("#inspector-node").hidden = true;
    $("#node-form").innerHTML = "";
  }

  // The form posts itself on change (htmx); the answer carries the params (cleaned when valid).
  // The listener sits on the form element, so an answer that arrives after another node was
  // selected still updates the node it belongs to.
  function bindForm(form) {
    if (!form || form.dataset.bound) return;
    form.dataset.bound = "1";
    form.addEventListener("htmx:beforeRequest", () => { S.formPending++; });
    form.addEventListener("htmx:afterRequest", () => { S.formPending = Math.max(0, S.formPending - 1); });
    form.addEventListener("htmx:beforeSwap", (ev) => {
      const doc = new DOMParser().parseFromString(ev.detail.xhr.responseText, "text/html");
      const script = doc.getElementById("node-form-result");
      if (script) applyFormResult(JSON.parse(script.textContent));
      if (!form.isConnected) ev.detail.shouldSwap = false;
    });
  }

  function applyFormResult(result) {
    const dfId = S.nodeToDf[result.node];
    if (!dfId || !result.submitted) return;
    const data = nodeData(dfId);
    if (JSON.stringify(data.params) === JSON.stringify(result.params)) return;
    data.params = result.params;
    S.editor.updateNodeDataFromId(dfId, data);
    changed(result.valid ? "Settings applied." : "Settings kept; fix the highlighted field.");
  }

  function deleteSelected() {
    if (!S.config.canEdit) return false;
    if (S.editor.node_selected) {
      S.editor.removeNodeId(S.editor.node_selected.id);
      return true;
    }
    if (S.editor.connection_selected) {
      S.editor.removeConnection();
      return true;
    }
    return false;
  }

  // --- dirty state, status, toast -----------------------------------------------------------

  function setDirty(value) {
    S.dirty = value;
    $("#dirty-indicator").hidden = !value;
    document.title = (value ? "● " : "") + document.title.replace(/^● /, "");
  }

  function changed(message) {
    if (S.loading) return;
    setDirty(true);
    if (message) status(message);
    scheduleValidate();
  }

  function status(message, kind) {
    const el = $("#status-line");
    el.textContent = message;
    el.className = kind ? "status-" + kind : "";
  }

  function toast(message, kind) {
    const el = $("#toast");
    el.textContent = message;
    el.className = "toast " + (kind || "error");
    el.hidden = false;
    clearTimeout(S.toastTimer);
    S.toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function updateHint() {
    $("#canvas-hint").hidden = Object.keys(home()).length > 0;
  }

  // --- validation on the nodes --------------------------------------------------------------

  function issuesOf(report) {
    if (!report) return [];
    const list = [];
    (report.errors || []).forEach((i) => list.push(Object.assign({ severity: "error" }, i)));
    (report.warnings || []).forEach((i) => list.push(Object.assign({ severity: "warning" }, i)));
    return list;
  }

  function applyReport(report) {
    S.report = report;
    const issues = issuesOf(report);
    document.querySelectorAll(".drawflow-node").forEach((el) => {
      el.classList.remove("has-error", "has-warning");
      const box = el.querySelector(".node-issues");
      if (box) { box.hidden = true; box.innerHTML = ""; }
    });
    const byNode = {};
    issues.forEach((i) => { if (i.node) (byNode[i.node] = byNode[i.node] || []).push(i); });
    Object.keys(byNode).forEach((nodeId) => {
      const el = nodeEl(S.nodeToDf[nodeId]);
      if (!el) return;
      const list = byNode[nodeId];
      const errors = list.filter((i) => i.severity === "error");
      el.classList.add(errors.length ? "has-error" : "has-warning");
      const box = el.querySelector(".node-issues");
      box.hidden = false;
      box.innerHTML = '<span class="issue-count" title="' + esc(list.map((i) => i.message).join("\n")) + '">' +
        (errors.length ? "⚠ " : "ⓘ ") + list.length + "</span>" +
        list.slice(0, 2).map((i) => '<div class="issue ' + i.severity + '">' + esc(i.message) + "</div>").join("") +
        (list.length > 2 ? '<div class="issue more">+' + (list.length - 2) + " more</div>" : "");
    });
    renderProblems(issues);
    renderNodeIssues();
  }

  function renderProblems(issues) {
    const errors = issues.filter((i) => i.severity === "error").length;
    const warnings = issues.length - errors;
    const toggle = $("#problems-toggle");
    toggle.className = "problems-toggle " + (errors ? "has-errors" : warnings ? "has-warnings" : "ok");
    toggle.textContent = errors || warnings
      ? [errors ? errors + " problem" + (errors > 1 ? "s" : "") : "", warnings ? warnings + " warning" + (warnings > 1 ? "s" : "") : ""]
        .filter(Boolean).join(" · ")
      : "✓ No problems found";
    const list = $("#problems-list");
    list.innerHTML = "";
    issues.forEach((i) => {
      const li = document.createElement("li");
      li.className = "problem " + i.severity;
      const where = i.node ? "<code>" + esc(i.node) + "</code>" + (i.field ? " · " + esc(i.field) : "") : "pipeline";
      li.innerHTML = '<span class="sev">' + (i.severity === "error" ? "⚠" : "ⓘ") + "</span> " + where + ": " + esc(i.message);
      if (i.node && S.nodeToDf[i.node]) {
        li.tabIndex = 0;
        li.title = "Show this step";
        const go = () => { selectNode(S.nodeToDf[i.node]); centerOn(S.nodeToDf[i.node]); };
        li.addEventListener("click", go);
        li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
      }
      list.appendChild(li);
    });
    if (!issues.length) list.innerHTML = '<li class="muted">Nothing to fix.</li>';
  }

  function renderNodeIssues() {
    const box = $("#inspector-issues");
    if (!box) return;
    const data = S.selected ? nodeData(S.selected) : null;
    const list = data ? issuesOf(S.report).filter((i) => i.node === data.nodeId) : [];
    box.innerHTML = list.map((i) => '<div class="issue ' + i.severity + '">' + (i.field ? "<strong>" + esc(i.field) + ":</strong> " : "") +
      esc(i.message) + "</div>").join("");
  }

  function scheduleValidate() {
    clearTimeout(S.validateTimer);
    S.validateTimer = setTimeout(() => validate(true), 700);
  }

  async function validate(quiet) {
    const seq = ++S.validateSeq;
    try {
      const res = await api("POST", S.config.urls.api + "/validate", { graph: toGraph() });
      if (seq !== S.validateSeq) return null;  // a newer check is on its way
      if (!res.ok) { if (!quiet) status(res.detail, "error"); return null; }
      applyReport(res.body);
      if (!quiet) {
        const n = issuesOf(res.body).length;
        status(res.body.ok ? (n ? "Ready to run, with " + n + " warning(s)." : "Everything is connected: ready to run.")
          : "Found " + (res.body.errors || []).length + " problem(s); they are marked on the steps.", res.body.ok ? "ok" : "error");
        if (!res.body.ok) openProblems(true);
      }
      return res.body;
    } catch (err) {
      if (!quiet) status("Could not check the pipeline: " + err.message, "error");
      return null;
    }
  }

  function openProblems(open) {
    $("#problems-panel").hidden = !open;
    $("#problems-toggle").setAttribute("aria-expanded", String(open));
  }

  // --- server calls -------------------------------------------------------------------------

  async function api(method, url, body) {
    const res = await window.llmopsFetch(url, {
      method: method, headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : res.statusText;
    return { ok: res.ok, status: res.status, body: data, detail: detail };
  }

  async function settleForm() {
    // Ctrl+S while typing in the settings form: commit the field first (change fires on blur).
    const active = document.activeElement;
    if (active && active.closest && active.closest("form.node-form")) active.blur();
    for (let i = 0; i < 40 && S.formPending === 0 && active && active.closest && active.closest("form.node-form"); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    for (let i = 0; i < 100 && S.formPending > 0; i++) await new Promise((r) => setTimeout(r, 50));
  }

  async function save() {
    if (S.saving || !S.config.canEdit) return false;
    S.saving = true;
    $("#btn-save").disabled = true;
    status("Saving…");
    try {
      await settleForm();
      const res = await api("PUT", S.config.urls.api, { graph: toGraph(), name: $("#pipeline-name").value });
      if (!res.ok) {
        toast("Not saved: " + res.detail);
        status("Not saved: " + res.detail, "error");
        return false;
      }
      S.config.version = res.body.number;
      const chip = $("#version-chip");
      chip.textContent = "v" + res.body.number;
      setDirty(false);
      applyReport(res.body.report);
      const errors = (res.body.report.errors || []).length;
      status("Saved as version " + res.body.number + "." + (errors ? " " + errors + " problem(s) to fix before it can run." : ""),
        errors ? "warn" : "ok");
      return true;
    } catch (err) {
      status("Not saved: " + err.message, "error");
      return false;
    } finally {
      S.saving = false;
      $("#btn-save").disabled = false;
    }
  }

  async function run() {
    if (S.dirty && !(await save())) return;
    status("Starting a run…");
    const res = await api("POST", S.config.urls.runs, { force: false });
    if (res.status === 404 || res.status === 405) {
      status("Runs are not available yet.", "warn");
      toast("Runs are not available yet.", "warn");
      return;
    }
    if (res.status === 422) {
      const issues = ((res.body && res.body.errors) || []).filter((i) => i && i.message);
      if (issues.length) applyReport({ ok: false, errors: issues, warnings: (res.body.warnings || []) });
      openProblems(true);
      status("The pipeline cannot run yet: " + res.detail, "error");
      return;
    }
    if (!res.ok) { status("Could not start the run: " + res.detail, "error"); return; }
    clearNodeStates();
    Object.entries(res.body.nodes || {}).forEach(([id, st]) => setNodeState(id, st));
    const el = $("#status-line");
    el.className = "status-ok";
    el.innerHTML = "Run #" + esc(res.body.id) + " started. " +
      (res.body.url ? '<a href="' + esc(res.body.url) + '">Open the run page</a>' : "");
    window.dispatchEvent(new CustomEvent("llmops:run-started", { detail: res.body }));
  }

  // --- run state on the nodes (called by the run UI, see EVENTS.md) -------------------------

  function fmtEta(s) {
    if (s == null || !isFinite(s)) return "";
    if (s < 60) return "about " + Math.max(1, Math.round(s)) + " s left";
    if (s < 3600) return "about " + Math.round(s / 60) + " min left";
    return "about " + (s / 3600).toFixed(1) + " h left";
  }

  function setNodeState(nodeId, state) {
    const el = nodeEl(S.nodeToDf[nodeId]);
    if (!el) return false;
    state = state || {};
    const box = el.querySelector(".node-state");
    Object.keys(STATUS_LABELS).forEach((s) => el.classList.remove("state-" + s));
    if (state.status) el.classList.add("state-" + state.status);
    const pct = state.progress == null ? null : Math.max(0, Math.min(1, Number(state.progress)));
    box.hidden = false;
    box.innerHTML = '<div class="state-line"><span class="badge ' + esc(state.status || "") + '">' +
      esc(STATUS_LABELS[state.status] || state.status || "") + "</span>" +
      (pct != null ? '<span class="pct">' + Math.round(pct * 100) + "%</span>" : "") +
      (state.eta_s != null ? '<span class="eta">' + esc(fmtEta(state.eta_s)) + "</span>" : "") + "</div>" +
      (pct != null ? '<div class="progress"><span style="width:' + (pct * 100).toFixed(1) + '%"></span></div>' : "") +
      (state.message ? '<div class="state-msg" title="' + esc(state.message) + '">' + esc(state.message) + "</div>" : "");
    S.editor.updateConnectionNodes("node-" + S.nodeToDf[nodeId]);
    return true;
  }

  function clearNodeStates() {
    document.querySelectorAll(".drawflow-node").forEach((el) => {
      Object.keys(STATUS_LABELS).forEach((s) => el.classList.remove("state-" + s));
      const box = el.querySelector(".node-state");
      if (box) { box.hidden = true; box.innerHTML = ""; }
    });
  }

  // --- zoom and pan -------------------------------------------------------------------------

  function applyTransform() {
    const e = S.editor;
    e.precanvas.style.transform = "translate(" + e.canvas_x + "px, " + e.canvas_y + "px) scale(" + e.zoom + ")";
    $("#zoom-level").textContent = Math.round(e.zoom * 100) + "%";
  }

  function fitView() {
    const e = S.editor, ids = Object.keys(home());
    const wrap = e.container.getBoundingClientRect();
    e.zoom = 1; e.zoom_last_value = 1; e.canvas_x = 0; e.canvas_y = 0;
    if (!ids.length) { applyTransform(); return; }
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    ids.forEach((id) => {
      const n = home()[id], el = nodeEl(id);
      x0 = Math.min(x0, n.pos_x); y0 = Math.min(y0, n.pos_y);
      x1 = Math.max(x1, n.pos_x + (el ? el.offsetWidth : 220)); y1 = Math.max(y1, n.pos_y + (el ? el.offsetHeight : 120));
    });
    const pad = 60;
    let z = Math.min(1, (wrap.width - 2 * pad) / (x1 - x0), (wrap.height - 2 * pad) / (y1 - y0));
    z = Math.max(e.zoom_min, z);
    e.zoom = z; e.zoom_last_value = z;
    applyTransform();
    const rect = e.precanvas.getBoundingClientRect();
    e.canvas_x = wrap.x + (wrap.width - (x1 - x0) * z) / 2 - (rect.x + x0 * z);
    e.canvas_y = wrap.y + (wrap.height - (y1 - y0) * z) / 2 - (rect.y + y0 * z);
    applyTransform();
  }

  function ensureVisible(dfId) {
    const el = nodeEl(dfId);
    if (!el) return;
    const wrap = S.editor.container.getBoundingClientRect(), r = el.getBoundingClientRect();
    if (r.left < wrap.left || r.right > wrap.right || r.top < wrap.top || r.bottom > wrap.bottom) centerOn(dfId);
  }

  function centerOn(dfId) {
    const e = S.editor, el = nodeEl(dfId);
    if (!el) return;
    const wrap = e.container.getBoundingClientRect(), r = el.getBoundingClientRect();
    e.canvas_x += wrap.x + wrap.width / 2 - (r.x + r.width / 2);
    e.canvas_y += wrap.y + wrap.height / 2 - (r.y + r.height / 2);
    applyTransform();
  }

  // --- wiring it up -------------------------------------------------------------------------

  function bindEditorEvents() {
    const e = S.editor;
    e.on("connectionCreated", onConnectionCreated);
    e.on("connectionRemoved", () => {
      if (S.suppressRemoved > 0) { S.suppressRemoved--; return; }
      changed("Wire removed.");
    });
    e.on("nodeRemoved", (dfId) => {
      const nodeId = S.dfToNode[dfId];
      delete S.dfToNode[dfId];
      delete S.nodeToDf[nodeId];
      if (S.selected === String(dfId)) closeInspector();
      updateHint();
      changed("Removed “" + nodeId + "”.");
    });
    e.on("nodeMoved", () => { setDirty(true); });
    e.on("nodeSelected", (dfId) => openInspector(dfId));
    e.on("nodeUnselected", () => closeInspector());
    e.on("zoom", () => { $("#zoom-level").textContent = Math.round(e.zoom * 100) + "%"; });
  }

  function bindToolbar() {
    const on = (sel, ev, fn) => { const el = $(sel); if (el) el.addEventListener(ev, fn); };
    on("#btn-save", "click", save);
    on("#btn-run", "click", run);
    on("#btn-validate", "click", () => validate(false));
    on("#btn-zoom-in", "click", () => S.editor.zoom_in());
    on("#btn-zoom-out", "click", () => S.editor.zoom_out());
    on("#btn-zoom-reset", "click", fitView);
    on("#btn-delete-node", "click", deleteSelected);
    on("#problems-toggle", "click", () => openProblems($("#problems-panel").hidden));
    on("#problems-close", "click", () => openProblems(false));
    on("#pipeline-name", "input", () => changed());
    on("#pipeline-name", "keydown", (ev) => { if (ev.key === "Enter") ev.target.blur(); });
    document.addEventListener("keydown", (ev) => {
      if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); save(); return; }
      const t = ev.target;
      const typing = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
      if (!typing && (ev.key === "Delete" || ev.key === "Backspace") && deleteSelected()) ev.preventDefault();
      if (!typing && ev.key === "Escape") { document.querySelectorAll(".drawflow-node.selected").forEach((el) => el.classList.remove("selected")); S.editor.node_selected = null; closeInspector(); }
    });
    // Every form htmx swaps in (after each change) needs its listener too.
    document.addEventListener("htmx:load", (ev) => {
      const el = ev.target;
      if (el && el.matches && el.matches("form.node-form")) bindForm(el);
      else if (el && el.querySelector) bindForm(el.querySelector("form.node-form"));
    });
    window.addEventListener("beforeunload", (ev) => {
      if (!S.dirty) return undefined;
      ev.preventDefault();
      ev.returnValue = "";
      return "";
    });
  }

  function init() {
    const cfg = document.getElementById("builder-config");
    if (!cfg) return;
    S.config = JSON.parse(cfg.textContent);
    S.config.palette.forEach((g) => g.kinds.forEach((k) => { S.specs[k.kind] = k; }));
    const editor = new window.Drawflow(document.getElementById("drawflow"));
    editor.reroute = false;
    editor.force_first_input = false;
    editor.editor_mode = S.config.canEdit ? "edit" : "view";
    editor.start();
    S.editor = editor;
    renderPalette();
    renderLegend();
    setupDrop();
    bindEditorEvents();
    bindToolbar();
    loadGraph(S.config.graph || { nodes: [], edges: [] });
    fitView();
    setDirty(false);
    status(Object.keys(home()).length ? "Loaded version " + S.config.version + "." : "Empty canvas: drag a node from the left to begin.");
    validate(true);
    window.LLMOpsBuilder.pipelineId = S.config.pipelineId;
  }

  window.LLMOpsBuilder = {
    pipelineId: null,
    setNodeState: setNodeState,
    clearNodeStates: clearNodeStates,
    getGraph: () => toGraph(),
    loadGraph: (g) => { loadGraph(g); fitView(); },
    isDirty: () => S.dirty,
    save: save,
    validate: () => validate(false),
    selectNode: (nodeId) => selectNode(S.nodeToDf[nodeId]),
    get editor() { return S.editor; },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
