// Draws every report chart (<canvas data-chart="{title, type, labels, series:[{name, data}]}">)
// with the vendored Chart.js, on load and whenever htmx swaps the reports section in again.
(function () {
  "use strict";
  const PALETTE = ["#3b5bdb", "#2b8a3e", "#e8590c", "#9c36b5", "#0c8599", "#c92a2a"];

  function draw(canvas) {
    if (canvas.dataset.drawn || typeof Chart === "undefined") return;
    let spec;
    try { spec = JSON.parse(canvas.dataset.chart); } catch (e) { return; }
    canvas.dataset.drawn = "1";
    const bar = spec.type === "bar";
    new Chart(canvas, {
      type: bar ? "bar" : "line",
      data: {
        labels: spec.labels || [],
        datasets: (spec.series || []).map(function (s, i) {
          const colour = PALETTE[i % PALETTE.length];
          return { label: s.name, data: s.data, borderColor: colour, backgroundColor: bar ? colour + "cc" : colour,
                   pointRadius: 0, borderWidth: 2, tension: 0.2 };
        }),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { title: { display: !!spec.title, text: spec.title }, legend: { display: (spec.series || []).length > 1 } },
        scales: {
          x: { title: { display: !!spec.x_label, text: spec.x_label } },
          y: { title: { display: !!spec.y_label, text: spec.y_label } },
        },
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
