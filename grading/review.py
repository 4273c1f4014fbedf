"""`python -m grading review SUBMISSION... --out DIR`: the class's writeups as one static site.

Each student's README, at the commit that was graded, is rendered (Markdown with tables, images and
math) beside their grade, tamper flags, what the sandbox blocked, and their feedback; an index lists the
class, and every page links to the previous and next student. The site works offline from the file
system: KaTeX (from the npm packages, `npm ci`) is copied into it and renders the math in the browser.

Students write the README, so it is treated as untrusted: raw HTML is cleaned by nh3 (ammonia: no
scripts, no event handlers, no styles), images load only from files the submission holds (anything
else is replaced by a visible note), and links to files the submission does not hold are shown, not
followed. Grades come from a regrade's output: `--grades DIR`, or one run into DIR/grades.
"""

import html
import json
import re
import shutil
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import nh3
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin

from grading import submissions
from grading.template import TOTAL_POINTS

REPO = Path(__file__).resolve().parent.parent
KATEX = REPO / "node_modules" / "katex" / "dist"
STATIC = Path(__file__).with_name("review_static")

ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1",
                "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong",
                "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
ALLOWED_ATTRIBUTES = {"*": {"class", "id", "title", "align"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
                      "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}


class ReviewError(Exception):
    """The site cannot be built: said in one line."""


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def markdown_renderer(allow_html: bool) -> MarkdownIt:
    return (MarkdownIt("commonmark", {"html": allow_html}).enable(["table", "strikethrough"])
            .use(dollarmath_plugin, double_inline=True)
            .use(anchors_plugin, max_level=6, slug_func=github_slug))


def render_readme(text: str, files: set[str]) -> str:
    """The README as safe HTML whose local images and links point only at `files` (paths in the site
    folder, which mirrors the repository)."""
    cleaned = nh3.clean(markdown_renderer(allow_html=True).render(text), tags=ALLOWED_TAGS,
                        attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"}, link_rel=None)
    anchors = set(re.findall(r'\sid="([^"]+)"', cleaned))

    def local(url: str):
        """The repository path a relative URL names, or None for anchors and other sites."""
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path:
            return None
        path = PurePosixPath(unquote(parts.path).lstrip("/"))
        return str(path) if ".." not in path.parts else "<outside the repository>"

    def image(match):
        tag, url = match.group(0), html.unescape(match.group(1))
        path = local(url)
        if path is None and not url.startswith("data:"):
            return f'<span class="missing">image from another site, not loaded: {html.escape(url)}</span>'
        if path is not None and path not in files:
            return f'<span class="missing">missing image: {html.escape(path)}</span>'
        return tag

    def link(match):
        url, label = html.unescape(match.group(1)), match.group(2)
        if url.startswith("#"):
            ok = unquote(url[1:]) in anchors
        else:
            path = local(url)
            ok = path is None or path in files
        if ok:
            external = ' target="_blank" rel="noopener noreferrer"' if urlsplit(url).scheme else ""
            return f'<a href="{html.escape(url)}"{external}>{label}</a>'
        return f'<span class="missing-link" title="not in the submission: {html.escape(url)}">{label}</span>'

    cleaned = re.sub(r'<img\s[^>]*?src="([^"]*)"[^>]*>', image, cleaned)
    return re.sub(r'<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>', link, cleaned, flags=re.S)


# --- pages -----------------------------------------------------------------------------------------------


def page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{up}static/katex/katex.min.css">
<link rel="stylesheet" href="{up}static/review.css">
<script defer src="{up}static/katex/katex.min.js"></script>
<script defer src="{up}static/render-math.js"></script>
</head>
<body>
{body}
</body>
</html>
"""


def score_panel(result: dict) -> str:
    items = [f'<p class="grade">{result["grade"]:g} / {TOTAL_POINTS}</p>',
             f'<p>public {result["public"]:g} / {result["public_max"]:g}, hidden {result["hidden"]:g} / '
             f'{result["hidden_max"]:g}</p>',
             f'<p>commit <code>{html.escape(result["commit"][:12])}</code>, status '
             f'<span class="status">{html.escape(result["status"])}</span></p>']
    if result["tamper"]:
        items.append('<div class="flags"><p>Tamper flags (graded with the instructor\'s copies):</p><ul>'
                     + "".join(f"<li><code>{html.escape(flag)}</code></li>" for flag in result["tamper"]) + "</ul></div>")
    if result["blocked"] or result["notes"]:
        items.append('<div class="flags"><p>Blocked by the grader:</p><ul>'
                     + "".join(f"<li>{html.escape(item)}</li>" for item in result["blocked"] + result["notes"])
                     + "</ul></div>")
    return "\n".join(items)


def student_page(result: dict, readme_html: str, feedback_md: str, previous: str, following: str) -> str:
    nav = ['<nav>', f'<a href="../{previous}/index.html">← {html.escape(previous)}</a>' if previous else "<span></span>",
           '<a href="../../index.html">the class</a>',
           f'<a href="../{following}/index.html">{html.escape(following)} →</a>' if following else "<span></span>",
           "</nav>"]
    feedback = markdown_renderer(allow_html=False).render(feedback_md)
    body = (f'{"".join(nav)}\n<header><h1>{html.escape(result["name"])}</h1>\n{score_panel(result)}</header>\n'
            f'<main><article class="readme">{readme_html}</article>\n'
            f'<aside class="feedback">{feedback}</aside></main>')
    return page(f"{result['name']}: writeup and grade", body, depth=2)


def index_page(results: list[dict]) -> str:
    rows = []
    for result in results:
        name = html.escape(result["name"])
        rows.append(f'<tr><td><a href="students/{name}/index.html">{name}</a></td><td>{result["grade"]:g}</td>'
                    f'<td>{result["public"]:g}</td><td>{result["hidden"]:g}</td><td>{html.escape(result["status"])}</td>'
                    f'<td>{len(result["tamper"]) or ""}</td><td>{len(result["blocked"]) + len(result["notes"]) or ""}</td></tr>')
    graded = [result["grade"] for result in results]
    mean = sum(graded) / len(graded) if graded else 0
    body = (f"<header><h1>Writeups and grades</h1><p>{len(results)} students, mean grade {mean:.2f} / "
            f"{TOTAL_POINTS}</p></header>\n<main><table class=\"class\"><thead><tr><th>student</th><th>grade</th>"
            f"<th>public</th><th>hidden</th><th>status</th><th>tamper flags</th><th>blocked</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></main>")
    return page("Writeups and grades", body, depth=0)


# --- the site --------------------------------------------------------------------------------------------------


def copy_static(site: Path):
    if not (KATEX / "katex.min.js").is_file():
        raise ReviewError(f"{KATEX.relative_to(REPO)} is missing: run `npm ci` in {REPO}")
    static = site / "static"
    shutil.copytree(STATIC, static, dirs_exist_ok=True)
    (static / "katex").mkdir(exist_ok=True)
    for name in ("katex.min.js", "katex.min.css"):
        shutil.copyfile(KATEX / name, static / "katex" / name)
    shutil.copytree(KATEX / "fonts", static / "katex" / "fonts", dirs_exist_ok=True)


def build_site(paths: list[Path], grades: Path, site: Path, log=print) -> Path:
    """Writes the site for these submissions from the regrade output in `grades`; returns its index."""
    results = []
    for path in paths:
        record = grades / "results" / f"{submissions.submission_name(path)}.json"
        if not record.is_file():
            raise ReviewError(f"{path}: no grade in {grades} (run the regrade on it first)")
        results.append((path, json.loads(record.read_text())))
    results.sort(key=lambda pair: pair[1]["name"])
    copy_static(site)
    names = [result["name"] for _, result in results]
    for index, (path, result) in enumerate(results):
        folder = site / "students" / result["name"]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        files = submissions.read(path, result["commit"]).files if result["commit"] else {}
        for name, content in files.items():
            if ".." not in PurePosixPath(name).parts:
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(content)
        readme = files.get("README.md", b"*This submission has no README.md.*").decode("utf-8", errors="replace")
        feedback = grades / "feedback" / f"{result['name']}.md"
        (folder / "index.html").write_text(student_page(
            result, render_readme(readme, set(files)), feedback.read_text() if feedback.exists() else "",
            names[index - 1] if index else "", names[index + 1] if index + 1 < len(names) else ""))
    (site / "index.html").write_text(index_page([result for _, result in results]))
    log(f"wrote the review site for {len(results)} students: {site / 'index.html'}")
    return site / "index.html"
