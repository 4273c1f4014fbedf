// Typesets the TeX that markdown-it's dollarmath plugin leaves in <span class="math inline"> and
// <div class="math block">, with the KaTeX copied beside this file. A formula KaTeX cannot parse is shown
// in red (class katex-error) instead of stopping the page.
//
// The TeX is the student's: no size it asks for (\rule, \kern, \hspace) may pass 10 em, no formula may
// expand macros more than 100 times, and nothing that would need trust (\href, \url, \includegraphics,
// \htmlClass, \htmlStyle) is rendered. KaTeX bounds sizes from above only (a negative \kern is not),
// so review.css also clips each piece of student content to its own box.
const BOUNDS = { maxSize: 10, maxExpand: 100, trust: false };

document.addEventListener("DOMContentLoaded", () => {
  for (const element of document.querySelectorAll(".math")) {
    katex.render(element.textContent, element, {
      ...BOUNDS,
      displayMode: element.classList.contains("block"),
      throwOnError: false,
    });
  }
  document.body.dataset.math = "typeset";
});
