// Typesets the TeX that markdown-it's dollarmath plugin leaves in <span class="math inline"> and
// <div class="math block">, with the KaTeX copied beside this file. A formula KaTeX cannot parse is shown
// in red (class katex-error) instead of stopping the page.
document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll(".math")) {
    katex.render(element.textContent, element, {
      displayMode: element.classList.contains("block"),
      throwOnError: false,
    });
  }
  document.body.dataset.math = "typeset";
});
