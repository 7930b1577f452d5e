// Knowledge: drag-and-drop (files and whole folders) and file-picker uploads with a progress
// bar and a result per file. Each file is its own request to the upload API (three at a time), so
// one bad or huge file never holds up or sinks the others, and the per-request limit is never hit.
(function () {
  "use strict";
  const section = document.getElementById("upload");
  if (!section) return;
  const api = section.dataset.api;
  const maxBytes = parseInt(section.dataset.maxFileMb, 10) * 1024 * 1024;
  const list = document.getElementById("upload-list");
  const zone = document.getElementById("dropzone");
  const CONCURRENCY = 3;
  const queue = [];
  const counts = { created: 0, duplicate: 0, error: 0, skipped: 0 };
  let active = 0;
  let summary = null;
  let refreshTimer = null;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function addRow(name) {
    const row = el("li", "upload-row waiting");
    const badge = el("span", "badge queued", "waiting");
    const bar = el("div", "progress");
    const fill = el("span");
    fill.style.width = "0%";
    bar.appendChild(fill);
    row.append(el("span", "up-name", name), badge, bar);
    list.appendChild(row);
    return {
      progress(fraction) { fill.style.width = Math.round(fraction * 100) + "%"; badge.textContent = "uploading"; },
      finish(status, reason, note) {
        row.className = "upload-row " + status;
        badge.className = "badge " + (status === "created" ? "ok" : status === "duplicate" ? "warn" : "failed");
        badge.textContent = status === "created" ? "added" : status;
        bar.remove();
        if (reason) row.appendChild(el("span", "up-reason", reason));
        if (note) row.appendChild(el("span", "up-note", note));
        counts[status] = (counts[status] || 0) + 1;
        showSummary();
      },
    };
  }

  function showSummary() {
    if (!summary) {
      summary = el("p", "upload-summary");
      list.after(summary);
    }
    const parts = [counts.created + " added"];
    if (counts.duplicate) parts.push(counts.duplicate + " duplicate" + (counts.duplicate > 1 ? "s" : ""));
    if (counts.error) parts.push(counts.error + " not added");
    if (counts.skipped) parts.push(counts.skipped + " hidden file" + (counts.skipped > 1 ? "s" : "") + " skipped");
    const waiting = queue.length + active;
    summary.textContent = parts.join(" · ") + (waiting ? " · " + waiting + " to go…" : "");
  }

  // The documents table and index status refresh through htmx ("knowledge-changed from:body"),
  // at most once a second however many files finish.
  function refreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      document.body.dispatchEvent(new CustomEvent("knowledge-changed", { bubbles: true }));
    }, 800);
  }

  function enqueue(files) {
    for (const file of files) {
      if (file.name.startsWith(".")) { counts.skipped += 1; continue; } // .DS_Store and friends
      const row = addRow(file.webkitRelativePath || file.relativePath || file.name);
      if (file.size > maxBytes) {
        row.finish("error", "Larger than the " + section.dataset.maxFileMb + " MB limit per file.");
        continue;
      }
      queue.push({ file: file, row: row });
    }
    showSummary();
    pump();
  }

  function pump() {
    while (active < CONCURRENCY && queue.length) {
      const job = queue.shift();
      active += 1;
      send(job).finally(function () { active -= 1; showSummary(); refreshSoon(); pump(); });
    }
  }

  function send(job) {
    return new Promise(function (resolve) {
      const form = new FormData();
      form.append("files", job.file, job.file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", api);
      xhr.setRequestHeader("X-CSRFToken", window.llmopsCsrf ? window.llmopsCsrf() : "");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = function (e) { if (e.lengthComputable) job.row.progress(e.loaded / e.total); };
      xhr.onload = function () {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
        if (xhr.status === 200 && body && body.results && body.results.length) {
          const r = body.results[0];
          job.row.finish(r.status, r.reason, r.note);
        } else {
          job.row.finish("error", (body && body.detail) || ("The server answered " + xhr.status + "."));
        }
        resolve();
      };
      xhr.onerror = function () { job.row.finish("error", "Network error: the file was not sent."); resolve(); };
      xhr.send(form);
    });
  }

  // --- folders: walk dropped directories (Chrome, Firefox, Safari all expose webkitGetAsEntry) ---
  function readAll(reader) {
    return new Promise(function (resolve) {
      const entries = [];
      (function next() {
        reader.readEntries(function (batch) {
          if (!batch.length) { resolve(entries); return; }
          entries.push.apply(entries, batch);
          next();
        }, function () { resolve(entries); });
      })();
    });
  }

  function walk(entry, prefix) {
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(function (file) {
          try { file.relativePath = prefix + file.name; } catch (err) { /* read-only in some browsers */ }
          resolve([file]);
        }, function () { resolve([]); });
      });
    }
    if (entry.isDirectory) {
      if (entry.name.startsWith(".")) return Promise.resolve([]);
      return readAll(entry.createReader()).then(function (children) {
        return Promise.all(children.map(function (c) { return walk(c, prefix + entry.name + "/"); }));
      }).then(function (lists) { return [].concat.apply([], lists); });
    }
    return Promise.resolve([]);
  }

  function filesFrom(dataTransfer) {
    const items = dataTransfer.items ? Array.from(dataTransfer.items) : [];
    const entries = items.map(function (i) { return i.webkitGetAsEntry ? i.webkitGetAsEntry() : null; });
    if (entries.length && entries.every(Boolean)) {
      return Promise.all(entries.map(function (e) { return walk(e, ""); }))
        .then(function (lists) { return [].concat.apply([], lists); });
    }
    return Promise.resolve(Array.from(dataTransfer.files || []));
  }

  // --- drag and drop anywhere on the page ---
  let depth = 0;
  function hasFiles(e) { return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files"); }
  document.addEventListener("dragenter", function (e) {
    if (!hasFiles(e)) return;
    depth += 1;
    document.body.classList.add("kn-dragging");
  });
  document.addEventListener("dragleave", function () {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove("kn-dragging");
  });
  document.addEventListener("dragover", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", function (e) {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("kn-dragging");
    filesFrom(e.dataTransfer).then(enqueue);
  });

  // --- pickers ---
  for (const id of ["file-input", "folder-input"]) {
    const input = document.getElementById(id);
    if (!input) continue;
    input.addEventListener("change", function () {
      enqueue(Array.from(input.files));
      input.value = "";
    });
  }
  if (zone) zone.addEventListener("submit", function (e) { e.preventDefault(); });
})();
