// edgeauth console: the copy button of the one-time secret. Everything else works without
// this script (confirmations are pages of their own).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) {
        return;
      }
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.textContent).then(done, function () {
          button.textContent = "Selected: press Ctrl+C";
        });
      } else {
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  });
});
