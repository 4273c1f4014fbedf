"""`python -m grading review SUBMISSION... --out DIR`: the class's writeups as one static site.

Each student's README, at the commit that was graded, is rendered (Markdown with tables, images and
math) beside their grade, tamper flags, review flags and feedback; an index lists the class, and every
page links to the previous and next student. The site works offline from the file system: KaTeX (from
the npm packages, `npm ci`) is copied into it and renders the math in the browser.

The site shows student content and never runs it:
- every page carries a Content-Security-Policy that lets only the site's own scripts (KaTeX and its
  starter) run, and loads images only from the site itself or data: URIs, nothing from the network;
- the README's raw HTML is cleaned by nh3 (ammonia): no scripts, handlers, styles, frames or forms, and no
  class but KaTeX's math markers, so nothing a student writes can look like the grade panel;
- a student's files are copied only as raster images (PNG, JPEG, GIF, WebP); an SVG is shown inside an
  <img> from a data: URI (where its scripts cannot run), and every other file (notebooks, code, HTML,
  text) as a page of escaped text beside it; links to them lead to those pages;
- math is typeset by KaTeX with its sizes and macro expansion bounded and nothing trusted, and every
  piece of student content (the README, each notebook answer cell) is clipped to its own box, so nothing
  a student writes is drawn over the grade, the rubric or the feedback;
- the feedback is shown as plain text;
- the rubric panel (with a rubric, as `python -m grading review` always gives) lists each item beside the
  student's work for it: a link to their README section, or their notebook answer cell cleaned like the
  README (no images, no links), with the instructor's points and comments.
Grades come from a regrade's output: `--grades DIR`, or one run into DIR/grades. With `--course COURSE`
(grading.course: roster, regrade in COURSE/grades, scores), each page shows the grade of record the
gradebook computes, with its parts, and the feedback the student reads; without it, the tests' grade,
named as such.
"""

import base64
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

from grading.errors import GradingError
from grading.regrade import submissions
from grading.regrade.results import format_points, read as read_record
from grading.publish.template import TOTAL_POINTS

REPO = Path(__file__).resolve().parents[2]
KATEX = REPO / "node_modules" / "katex" / "dist"
STATIC = Path(__file__).with_name("review_static")

ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em", "h1",
                "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span", "strong",
                "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
ALLOWED_ATTRIBUTES = {"*": {"id", "title", "align"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
                      "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
# The only classes a README keeps: the math markers markdown-it writes and KaTeX reads.
ALLOWED_CLASSES = {"span": {"math", "inline"}, "div": {"math", "block"}}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self'; base-uri 'none'; form-action 'none'")
RASTER_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


class ReviewError(GradingError):
    """The site cannot be built: said in one line."""


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def markdown_renderer(allow_html: bool) -> MarkdownIt:
    return (MarkdownIt("commonmark", {"html": allow_html}).enable(["table", "strikethrough"])
            .use(dollarmath_plugin, double_inline=True)
            .use(anchors_plugin, max_level=6, slug_func=github_slug))


def shown_as(path: str) -> str:
    """Where a student's file is shown in the site: the image itself, or the page of escaped text beside it."""
    return path if path.lower().endswith(RASTER_IMAGES) else f"{path}.html"


def svg_data_uri(content: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(content).decode()


def render_readme(text: str, files: dict) -> str:
    """The README as safe HTML whose local images and links point only at `files` (path -> content; shown
    in the site folder, which mirrors the repository)."""
    cleaned = nh3.clean(markdown_renderer(allow_html=True).render(text), tags=ALLOWED_TAGS,
                        attributes=ALLOWED_ATTRIBUTES, allowed_classes=ALLOWED_CLASSES,
                        url_schemes={"http", "https", "mailto"}, link_rel=None)
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
        if path is None:
            return f'<span class="missing">image from another site, not loaded: {html.escape(url)}</span>'
        if path not in files:
            return f'<span class="missing">missing image: {html.escape(path)}</span>'
        if path.lower().endswith(".svg"):
            return tag.replace(match.group(1), html.escape(svg_data_uri(files[path])), 1)
        if not path.lower().endswith(RASTER_IMAGES):
            return f'<span class="missing">not an image: {html.escape(path)}</span>'
        return tag

    def link(match):
        url, label = html.unescape(match.group(1)), match.group(2)
        path = None if url.startswith("#") else local(url)
        if url.startswith("#"):
            ok = unquote(url[1:]) in anchors
        else:
            ok = path is None or path in files
        if ok:
            external = ' target="_blank" rel="noopener noreferrer"' if urlsplit(url).scheme else ""
            target = html.escape(url if path is None else shown_as(path))
            return f'<a href="{target}"{external}>{label}</a>'
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
<meta http-equiv="Content-Security-Policy" content="{CSP}">
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


def flag_list(title: str, items: list[str]) -> str:
    return (f'<div class="flags"><p>{html.escape(title)}</p><ul>'
            + "".join(f"<li><code>{html.escape(item)}</code></li>" for item in items) + "</ul></div>")


def score_panel(result: dict, record: dict = None, rubric=None) -> str:
    """The grade beside the writeup: with the course's gradebook `record` (grading.course.gradebook), the grade
    of record and its parts; without one, the graded tests' grade, named as such. Then the commit, the test
    points and the flags."""
    if record is not None:
        from grading.course.gradebook import grade_parts, out_of

        grade, possible = format_points(record["final"]), html.escape(out_of(rubric))
        provisional = " so far, provisional" if record.get("missing") else ""
        rows = "".join(f"<tr><td>{html.escape(what)}</td><td class=\"points\">{html.escape(points)}</td>"
                       f"<td>{'/ ' + html.escape(most) if most else ''}</td></tr>"
                       for what, points, most in grade_parts(record, rubric))
        items = [f'<p class="grade">{grade} / {possible}{provisional}</p>',
                 f'<p>the grade of record, as the gradebook computes it: <span class="status">'
                 f'{html.escape(record["status"])}</span></p>',
                 f'<table class="parts"><tbody>{rows}<tr><td><b>grade</b></td><td class="points"><b>{grade}</b>'
                 f'</td><td>/ {possible}</td></tr></tbody></table>']
    else:
        late = (f", {result['days_late']} day(s) late: the late policy takes "
                f"{format_points(result['late_penalty'])} off the grade of record" if result.get("days_late") else "")
        items = [f'<p class="grade">tests: {format_points(result["grade"])} / {format_points(TOTAL_POINTS)}</p>',
                 f"<p>the graded tests' grade only{html.escape(late)}: the grade of record adds the rubric's items, "
                 "the bonus and late days (<code>python -m grading review --course</code> shows it)</p>"]
    items += [f'<p>public tests {format_points(result["public"])} / {format_points(result["public_max"])}, '
              f'hidden tests {format_points(result["hidden"])} / {format_points(result["hidden_max"])}; commit '
              f'<code>{html.escape(result["commit"][:12])}</code>, regrade status '
              f'<span class="status">{html.escape(result["status"])}</span></p>']
    if result["tamper"]:
        items.append(flag_list("Tamper flags (graded with the instructor's copies):", result["tamper"]))
    if result.get("review"):
        items.append(flag_list("Code a model file has no need for (read it):", result["review"]))
    if result.get("notes"):
        items.append(flag_list("What the sandbox stopped or refused:", result["notes"]))
    return "\n".join(items)


def student_page(result: dict, readme_html: str, feedback_text: str, previous: str, following: str,
                 rubric_html: str = "", record: dict = None, rubric=None) -> str:
    nav = ['<nav>', f'<a href="../{html.escape(previous)}/index.html">← {html.escape(previous)}</a>' if previous
           else "<span></span>", '<a href="../../index.html">the class</a>',
           f'<a href="../{html.escape(following)}/index.html">{html.escape(following)} →</a>' if following
           else "<span></span>", "</nav>"]
    body = (f'{"".join(nav)}\n<header class="score"><h1>{html.escape(result["name"])}</h1>\n'
            f'{score_panel(result, record, rubric)}</header>\n'
            f'<main><article class="readme"><p class="untrusted">The student\'s README, as committed:</p>\n'
            f'<div class="student-content">{readme_html}</div></article>\n'
            f'{rubric_html}<aside class="feedback"><pre>{html.escape(feedback_text)}</pre></aside></main>')
    return page(f"{result['name']}: writeup and grade", body, depth=2)


def index_page(results: list[dict], records: dict = None) -> str:
    """The class: with the gradebook's `records` (student -> record), each grade of record; else the tests'."""
    rows = []
    for result in results:
        name = html.escape(result["name"])
        record = (records or {}).get(result["name"])
        grade = (f'<td>{format_points(record["final"])}</td><td>{html.escape(record["status"])}</td>' if records
                 else f'<td>{format_points(result["grade"])}</td>')
        rows.append(f'<tr><td><a href="students/{name}/index.html">{name}</a></td>{grade}'
                    f'<td>{format_points(result["public"])}</td><td>{format_points(result["hidden"])}</td>'
                    f'<td>{html.escape(result["status"])}</td>'
                    f'<td>{len(result["tamper"]) or ""}</td><td>{len(result.get("review", [])) or ""}</td>'
                    f'<td>{len(result.get("notes", [])) or ""}</td></tr>')
    graded = [records[result["name"]]["final"] if records else result["grade"] for result in results]
    mean = format_points(round(sum(graded) / len(graded), 2) if graded else 0)
    what = "grade of record" if records else "tests' grade"
    columns = ("<th>grade</th><th>gradebook status</th>" if records else "<th>tests' grade</th>")
    body = (f"<header><h1>Writeups and grades</h1><p>{len(results)} students, mean {what} {mean}</p></header>\n"
            f"<main><table class=\"class\"><thead><tr><th>student</th>{columns}<th>public tests</th>"
            f"<th>hidden tests</th><th>regrade status</th><th>tamper flags</th><th>review flags</th>"
            f"<th>sandbox notes</th></tr></thead><tbody>{''.join(rows)}</tbody></table></main>")
    return page("Writeups and grades", body, depth=0)


def text_page(path: str, content: bytes, depth: int) -> str:
    """A student's file as escaped text (a notebook as its cells), never as something that runs."""
    if path.lower().endswith(".svg"):
        body = f'<img src="{html.escape(svg_data_uri(content))}" alt="{html.escape(path)}">'
    elif path.endswith(".ipynb"):
        body = notebook_html(content)
    else:
        body = f"<pre>{html.escape(content.decode('utf-8', errors='replace'))}</pre>"
    return page(path, f"<header><h1><code>{html.escape(path)}</code></h1></header>\n"
                      f'<main><div class="student-content">{body}</div></main>', depth)


def notebook_html(content: bytes) -> str:
    """A notebook's cells: Markdown cleaned as the README is, code and text outputs escaped, PNG outputs as
    data: images; HTML and script outputs are left out (named, not shown)."""
    try:
        notebook = json.loads(content)
        cells = notebook.get("cells", []) if isinstance(notebook, dict) else []
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"<pre>{html.escape(content.decode('utf-8', errors='replace'))}</pre>"
    parts = []
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if cell.get("cell_type") == "markdown":
            parts.append(nh3.clean(markdown_renderer(allow_html=True).render(source), tags=ALLOWED_TAGS - {"img"},
                                   attributes=ALLOWED_ATTRIBUTES, allowed_classes=ALLOWED_CLASSES,
                                   url_schemes={"http", "https", "mailto"}, link_rel=None))
            continue
        parts.append(f"<pre>{html.escape(source)}</pre>")
        for output in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
            if not isinstance(output, dict):
                continue
            data = output.get("data") if isinstance(output.get("data"), dict) else {}
            text = output.get("text", data.get("text/plain", ""))
            png = data.get("image/png")
            if isinstance(png, str) and re.fullmatch(r"[A-Za-z0-9+/=\s]+", png):
                parts.append(f'<img src="data:image/png;base64,{"".join(png.split())}" alt="an output">')
            elif text:
                parts.append(f"<pre>{html.escape(''.join(text) if isinstance(text, list) else str(text))}</pre>")
            elif data:
                kinds = ", ".join(sorted(html.escape(str(kind)) for kind in data))
                parts.append(f'<p class="missing">an output not shown here ({kinds})</p>')
    return "\n".join(parts)


# --- the rubric panel -------------------------------------------------------------------------------------------


def answer_html(source: str) -> str:
    """A notebook answer cell as the notebook pages show Markdown cells: cleaned, no images, and no links
    (the panel links nowhere a student chose)."""
    return nh3.clean(markdown_renderer(allow_html=True).render(source), tags=ALLOWED_TAGS - {"img", "a"},
                     attributes=ALLOWED_ATTRIBUTES, allowed_classes=ALLOWED_CLASSES, url_schemes=set(),
                     link_rel=None)


def rubric_panel(rubric, files: dict, readme_html: str, record: dict = None) -> str:
    """Each rubric item beside the student's work for it: a link to the README section, or the notebook's
    answer cell (cleaned Markdown, math typeset); with the instructor's points, comments and the regrade
    requests from the gradebook's `record` (grading.course.gradebook), and the rubric's grading guide.
    Everything shown is escaped or cleaned."""
    from grading.course.rubric import cells_of

    record = record or {"items": {}, "comments": {}, "requests": []}
    notebooks = {}
    rows = []
    for item in rubric.items:
        score = (f"{format_points(record['items'].get(item.id))} / {format_points(item.points)}"
                 + (" bonus" if item.bonus else ""))
        comment = record["comments"].get(item.id, "")
        if item.notebook:
            if item.notebook not in notebooks:
                try:
                    notebooks[item.notebook] = cells_of(json.loads(files[item.notebook]))
                except (KeyError, ValueError, UnicodeDecodeError):
                    notebooks[item.notebook] = None
            cells = notebooks[item.notebook]
            if cells is None:
                work = f'<span class="missing">no readable {html.escape(item.notebook)}</span>'
            elif item.cell not in cells:
                work = f'<span class="missing">no answer cell {html.escape(item.cell)} in {html.escape(item.notebook)}</span>'
            else:
                work = (f'<p class="untrusted">{html.escape(item.notebook)}, answer cell, as committed:</p>'
                        f'<div class="answer student-content">{answer_html(cells[item.cell])}</div>')
        else:
            anchor = re.search(rf'<h[1-6] id="([^"]+)"[^>]*>\s*{re.escape(html.escape(item.id))}\s', readme_html)
            work = (f'<a href="#{html.escape(anchor.group(1))}">README, {html.escape(item.id)}</a>' if anchor else
                    f'<span class="missing">no section {html.escape(item.id)} in the README</span>')
        rows.append(f'<tr><td><b>{html.escape(item.id)}</b> {html.escape(item.title)} ({html.escape(item.question)})'
                    + (f'<p class="guide">{html.escape(item.guide)}</p>' if item.guide else "")
                    + f'</td><td class="points">{score}'
                    + (f'<p class="comment">{html.escape(comment)}</p>' if comment else "")
                    + f"</td><td>{work}</td></tr>")
    asked = "".join(f"<li>{html.escape(request['item'])}: {html.escape(request['request'])}"
                    + (f" — answered: {html.escape(request['response'])}" if request["response"] else " — open")
                    + "</li>" for request in record["requests"])
    return (f'<section class="rubric"><h2>Rubric: {html.escape(rubric.title)}</h2>'
            + '<table><thead><tr><th>item</th><th>points</th><th>the work</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>"
            + (f'<p>Regrade requests (the student\'s words):</p><ul class="untrusted-list">{asked}</ul>' if asked else "")
            + "</section>")


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


def write_student_files(folder: Path, files: dict):
    """Raster images as they are; every other file as a page of escaped text, at `shown_as(path)`."""
    root = folder.resolve()
    for name, content in files.items():
        target = (folder / shown_as(name)).resolve()
        if not target.is_relative_to(root):
            continue  # the regrade refuses such paths already: never written, whatever happens
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.lower().endswith(RASTER_IMAGES):
            target.write_bytes(content)
        else:
            target.write_text(text_page(name, content, depth=2 + name.count("/")))


def build_site(paths: list[Path], grades: Path, site: Path, log=print, rubric=None, course: Path = None) -> Path:
    """Writes the site for these submissions from the regrade output in `grades`; returns its index. With a
    rubric (grading.course.rubric.Rubric), each page has the rubric panel; with a course folder too, the
    gradebook is computed (and COURSE/final written, as `gradebook` does) and each page shows the grade of
    record, its parts, the instructor's points and comments, and the feedback the student reads."""
    results = []
    for path in paths:
        record = grades / "results" / f"{submissions.submission_name(path)}.json"
        if not record.is_file():
            raise ReviewError(f"{path}: no grade in {grades} (run the regrade on it first)")
        results.append((path, read_record(record, submissions.submission_name(path))))
    results.sort(key=lambda pair: pair[1]["name"])
    records = None
    if course is not None:
        from grading.course.gradebook import write_all

        records = write_all(course, rubric, log=lambda line: None)["students"]
        strangers = [result["name"] for _, result in results if result["name"] not in records]
        if strangers:
            raise ReviewError(f"{', '.join(strangers)}: not in {course / 'roster.csv'}")
    copy_static(site)
    names = [result["name"] for _, result in results]
    for index, (path, result) in enumerate(results):
        folder = site / "students" / result["name"]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        submission = submissions.read(path, result["commit"]) if result["commit"] else None
        files = submission.files if submission is not None and not submission.problem else {}
        write_student_files(folder, files)
        readme = files.get("README.md", b"*This submission has no README.md.*").decode("utf-8", errors="replace")
        record = records[result["name"]] if records is not None else None
        feedback = (course / "final" if record is not None else grades) / "feedback" / f"{result['name']}.md"
        readme_html = render_readme(readme, files)
        panel = rubric_panel(rubric, files, readme_html, record) if rubric is not None else ""
        (folder / "index.html").write_text(student_page(
            result, readme_html, feedback.read_text() if feedback.exists() else "",
            names[index - 1] if index else "", names[index + 1] if index + 1 < len(names) else "", panel,
            record, rubric))
    (site / "index.html").write_text(index_page([result for _, result in results], records))
    log(f"wrote the review site for {len(results)} students: {site / 'index.html'}")
    return site / "index.html"
