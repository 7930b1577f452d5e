// The run page: htmx's ws extension swaps node rows, progress bars and log lines in place
// (server-rendered fragments); this script adds what HTML swaps cannot do alone: reconnect
// from the last event seen, drop duplicates, draw metric charts, tick durations.
(function () {
  "use strict";
  const page = document.getElementById("run-page");
  if (!page) return;
  let lastSeq = Number(page.dataset.lastSeq || 0);
  const MAX_LOG_LINES = 500;

  // Reconnects (the ws extension retries after 1006 and friends) resume after the last event
  // this page has applied, so nothing is missed and nothing arrives twice.
  const baseCreate = htmx.createWebSocket;
  htmx.createWebSocket = function (url) {
    if (url.indexOf("/ws/runs/") >= 0) url = url.replace(/([?&]after=)\d+/, "$1" + lastSeq);
    return baseCreate ? baseCreate(url) : new WebSocket(url);
  };

  page.addEventListener("htmx:wsBeforeMessage", function (evt) {
    const m = /data-seq="(\d+)"/.exec(evt.detail.message || "");
    if (m && Number(m[1]) <= lastSeq) evt.preventDefault();
  });

  page.addEventListener("htmx:wsAfterMessage", function () {
    const marker = document.getElementById("run-last-event");
    if (!marker || !marker.dataset.event) return;
    let event;
    try { event = JSON.parse(marker.dataset.event); } catch (e) { return; }
    if (event.seq <= lastSeq) return;
    lastSeq = event.seq;
    page.dataset.lastSeq = String(lastSeq);
    if (event.metrics) addMetrics(event.node, event.metrics);
    if (event.type === "log" || event.type === "failed") trimLog();
  });

  function trimLog() {
    const log = document.getElementById("run-log");
    if (!log) return;
    const empty = log.querySelector(".log-empty");
    if (empty) empty.remove();
    while (log.children.length > MAX_LOG_LINES) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  // --- metrics chart ----------------------------------------------------------------------
  const COLORS = ["#3b5bdb", "#2b8a3e", "#e8590c", "#ae3ec9", "#c92a2a", "#1098ad", "#5c940d", "#d6336c"];
  let chart = null;
  const series = {};  // "node · name" -> dataset

  function datasetFor(node, name) {
    const label = (node ? node + " · " : "") + name;
    if (!series[label]) {
      const color = COLORS[Object.keys(series).length % COLORS.length];
      series[label] = { label: label, data: [], borderColor: color, backgroundColor: color,
        borderWidth: 2, tension: 0.2,
        // Dots while a series is short (a single final value must show), a clean line after.
        pointRadius: function (c) { return c.dataset.data.length > 60 ? 0 : 2.5; } };
      if (chart) chart.data.datasets.push(series[label]);
    }
    return series[label];
  }

  function addPoint(node, name, value, step) {
    if (typeof value !== "number" || !isFinite(value)) return;
    const ds = datasetFor(node, name);
    ds.data.push({ x: step == null ? ds.data.length + 1 : step, y: value });
  }

  function addMetrics(node, metrics) {
    Object.keys(metrics).forEach(function (name) {
      // Progress bookkeeping (counters, totals, ETA) belongs to the progress bar, not the chart.
      if (name !== "step" && name !== "eta_s" && !/_(done|total)$/.test(name)) addPoint(node, name, metrics[name], metrics.step);
    });
    if (!chart) makeChart(); else chart.update("none");
    const empty = document.getElementById("chart-empty");
    if (empty && Object.keys(series).length) empty.hidden = true;
  }

  function makeChart() {
    const canvas = document.getElementById("run-chart");
    if (!canvas || typeof Chart === "undefined" || !Object.keys(series).length) return;
    chart = new Chart(canvas, {
      type: "line",
      data: { datasets: Object.values(series) },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
        interaction: { mode: "nearest", intersect: false },
        scales: { x: { type: "linear", title: { display: true, text: "step" } } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      },
    });
  }

  const initial = document.getElementById("run-metrics");
  if (initial) {
    try {
      JSON.parse(initial.textContent).forEach(function (p) { addPoint(p.node, p.name, p.value, p.step); });
    } catch (e) { /* no points */ }
    makeChart();
  }

  // --- durations of running nodes tick every second ------------------------------------------
  function fmt(seconds) {
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    if (m < 60) return m + " min " + String(s).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }
  setInterval(function () {
    const now = Date.now() / 1000;
    document.querySelectorAll("[data-started]:not([data-finished])").forEach(function (el) {
      el.textContent = fmt(Math.max(0, now - Number(el.dataset.started)));
    });
  }, 1000);
  trimLog();
})();
