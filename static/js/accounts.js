// Copy buttons: <button data-copy="#selector"> copies that element's text (works on htmx-swapped content).
(function () {
  "use strict";
  function fallbackCopy(el) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return document.execCommand && document.execCommand("copy");
  }
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const text = source.textContent.trim();
    const done = function () {
      button.dataset.label = button.dataset.label || button.textContent;
      button.textContent = button.dataset.copiedLabel || "Copied";
      setTimeout(function () { button.textContent = button.dataset.label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { if (fallbackCopy(source)) done(); });
    } else if (fallbackCopy(source)) {
      done();
    }
  });
})();
