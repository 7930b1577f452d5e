// Small helpers shared by every page.
(function () {
  "use strict";
  // fetch() calls from our own scripts carry the CSRF token like htmx requests do.
  window.llmopsCsrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };
  window.llmopsFetch = function (url, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-CSRFToken": window.llmopsCsrf() }, opts.headers || {});
    return fetch(url, opts);
  };
})();
