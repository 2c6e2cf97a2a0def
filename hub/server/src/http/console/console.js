// carehub's console needs almost no script: it collects errors for the tests
// (window.consoleErrors) and asks before a bundle download of a long period.
"use strict";
window.consoleErrors = window.consoleErrors || [];
window.addEventListener("error", function (e) {
  window.consoleErrors.push(String(e.message || e));
});
window.addEventListener("unhandledrejection", function (e) {
  window.consoleErrors.push(String(e.reason));
});
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("bundle-form");
  if (!form) return;
  form.addEventListener("submit", function () {
    var button = document.getElementById("bundle-button");
    if (button) button.textContent = "Hämtar…";
  });
});
