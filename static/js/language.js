// The language switch submits itself on change (an external script: the pages' CSP runs
// no inline event handlers).
for (const select of document.querySelectorAll("form.lang-switch select")) {
  select.addEventListener("change", () => select.form.submit());
}
