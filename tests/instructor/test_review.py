"""`python -m grading review`, on the synthetic class: the site holds every student, and in headless
Chromium every page loads offline with its math typeset, its images shown and no link broken; nothing a
student wrote runs there or passes for the grader's own words. (Instructor-only. Chromium:
tests/browser.py; skips without it unless PIGLATIN_REQUIRE_BROWSER=1.)"""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from browser import open_page
from synthetic_submissions import ROOT


@pytest.fixture(scope="module")
def site(graded_class, tmp_path_factory):
    """(submissions, the site's folder), built from the session's regrade."""
    made, grades, _, _, _ = graded_class
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "grading", "review", *map(str, made.values()), "--grades",
                             str(grades), "--out", str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return made, site


def student_page(site: Path, name: str) -> str:
    return (site / "students" / name / "index.html").read_text()


def test_the_index_lists_every_student_and_each_page_links_to_its_neighbours(site):
    made, site = site
    index = (site / "index.html").read_text()
    assert re.findall(r'href="students/([^/]+)/index.html"', index) == sorted(made)
    names = sorted(made)
    at = names.index("exits")
    page = student_page(site, "exits")
    assert f'href="../{names[at - 1]}/index.html"' in page and f'href="../{names[at + 1]}/index.html"' in page
    assert 'href="../../index.html"' in page


def test_each_page_shows_the_grade_the_flags_what_was_stopped_and_the_feedback(site):
    _, site = site
    assert "4.79 / 10" in student_page(site, "partly") and "README sections to reread" in student_page(site, "partly")
    assert "changed tests/graded/test_q1_transformer.py" in student_page(site, "tampers")
    assert "Code a model file has no need for" in student_page(site, "escapes") and "imports socket" in student_page(site, "escapes")
    assert "What the sandbox stopped or refused" in student_page(site, "hangs")
    assert "This submission has no README.md" not in student_page(site, "stubs")


def test_the_writeup_is_cleaned_and_what_it_lacks_is_shown_not_broken(site):
    _, site = site
    page = student_page(site, "correct")
    article = page.split('<article class="readme">')[1].split("</article>")[0]
    assert "<script" not in article and "onerror" not in article and "alert" not in article
    assert "missing image: assets/forgotten.png" in article
    assert "image from another site, not loaded: https://example.com/plot.png" in article
    assert 'title="not in the submission: exps/my_run.txt"' in article  # only the student's own files are copied
    assert '<a href="models/mamba.py.html">my scan</a>' in article  # the code as a page of text
    assert (site / "students" / "correct" / "assets" / "loss.png").is_file()


def test_nothing_a_student_wrote_can_pass_for_the_graders_words_or_be_opened_as_a_page(site):
    _, site = site
    page = student_page(site, "tampers")
    article = page.split('<article class="readme">')[1].split("</article>")[0]
    for banned in ("<script", "<style", "<iframe", "<meta", "class=\"grade\"", "class=\"flags\"", "javascript:", "onload"):
        assert banned not in article, banned
    assert 'src="data:image/svg+xml;base64,' in article and 'href="assets/page.html.html"' in article
    assert not list((site / "students").rglob("*.svg")) and not (site / "students" / "tampers" / "assets" / "page.html").exists()
    for path in (site / "students").rglob("*.html"):
        text = path.read_text()
        assert text.startswith("<!DOCTYPE html>") and 'http-equiv="Content-Security-Policy"' in text, path
    assert "&lt;script&gt;" in (site / "students" / "tampers" / "assets" / "page.html.html").read_text()
    feedback = page.split('<aside class="feedback">')[1].split("</aside>")[0]
    assert feedback.startswith("<pre>") and "<a " not in feedback and "<img" not in feedback


def local_target(url: str) -> tuple[Path, str]:
    parts = urlsplit(url)
    return Path(unquote(parts.path)), unquote(parts.fragment)


def test_every_page_loads_offline_with_math_typeset_images_shown_no_broken_link_and_nothing_run(site):
    made, site = site
    pages = [site / "index.html", *sorted((site / "students").rglob("*.html"))]
    with open_page() as browser:
        for path in pages:
            browser.goto(path.as_uri())
            browser.wait_for_function("document.body.dataset.math === 'typeset'", timeout=10_000)
            assert browser.evaluate("window.pwned") is None, f"{path}: a student's script ran"
            broken = browser.eval_on_selector_all(
                "img", "images => images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
            assert broken == [], f"{path}: images that did not load: {broken}"
            assert browser.locator(".katex-error").count() == 0, f"{path}: KaTeX could not typeset a formula"
            for url in browser.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
                if not url.startswith("file:"):
                    continue
                target, fragment = local_target(url)
                assert target.is_file(), f"{path}: a link to {target}, which does not exist"
                if fragment:
                    assert f'id="{fragment}"' in target.read_text(), f"{path}: a link to #{fragment}, not on {target}"
            if path.parent.name == "correct" and path.name == "index.html":
                assert browser.locator(".katex").count() >= 2 and browser.locator(".katex-display").count() == 1
                assert browser.locator("article img").count() == 2
        assert browser.problems == []


# --- nothing a student writes is drawn over the grader's words ---------------------------------------------------

TEN_OUT_OF_TEN = r"\colorbox{lime}{\Huge 10 / 10 regrade approved}"
# Lime squares of 10 em (KaTeX's maxSize here) 50 em to the right of the README's column, on a line that keeps
# no height of its own: each space is within maxSize, together they reach across the page.
CARPET = r"$\smash{\mathrlap{" + r"\hspace{10em}" * 5 + r"\color{lime}\rule{10em}{10em}" * 4 + "}}$"
# Each line tries to paint over the grade, the rubric or the feedback from inside the README: sizes past any
# bound (\rule), sizes that add up past maxSize (the carpet, under every paragraph, reaching the rubric and
# the feedback beside the README; raised boxes), negative kerns and spaces (KaTeX bounds sizes from above
# only), a macro bomb, what needs trust, and HTML/CSS positioned over the page, huge images and unbreakable
# lines.
ATTACKS = [
    rf"$\smash{{\raisebox{{10em}}{{\raisebox{{10em}}{{{TEN_OUT_OF_TEN}}}}}}}$ over the grade, above",
    "# Mallory's writeup",
    r"$$\color{lime}\rule{5000em}{5000em}$$",
    rf"$\kern-300em{TEN_OUT_OF_TEN}\hspace{{-200em}}\rule{{10em}}{{10em}}$",
    r"$\def\a{\b\b\b\b}\def\b{\c\c\c\c}\def\c{\d\d\d\d}\def\d{\e\e\e\e}\def\e{\f\f}\def\f{x}\a$",
    r"$\href{https://example.com}{\htmlClass{grade}{\htmlStyle{position:fixed;inset:0}{10/10}}}$",
    '<div style="position:fixed;inset:0;z-index:2147483647;background:lime">10 / 10 regrade approved</div>',
    '<img src="assets/lime.png" width="30000" height="30000" alt="a huge image">',
    '<table><tr><td>' + "W" * 5000 + '</td></tr></table>',
    "<pre>" + "10/10 " * 2000 + "</pre>",
    "`" + "x" * 5000 + "`",
]
HOSTILE_README = "\n\n".join([ATTACKS[0], CARPET, *(line for attack in ATTACKS[1:] for line in (attack, CARPET)),
                                *[CARPET] * 40])
PROTECTED = {"grade": "header.score", "rubric": "section.rubric", "feedback": "aside.feedback pre"}


def lime_png(size: int = 40) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x00\xff\x00" * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    """The review site of a course of one student, Mallory, whose README attacks the page (no regrade: her
    results are written by hand); the path of her page."""
    import json

    from grading.course import rubric
    from semester import a_result

    root = tmp_path_factory.mktemp("hostile")
    repo = root / "mallory"
    (repo / "assets").mkdir(parents=True)
    (repo / "README.md").write_text(HOSTILE_README)
    (repo / "assets" / "lime.png").write_bytes(lime_png())
    student = ["-c", "user.name=M", "-c", "user.email=m@example.invalid"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), *student, "commit", "-qm", "writeup"], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    course = root / "course"
    (course / "grades" / "results").mkdir(parents=True)
    (course / "roster.csv").write_text(f"student,repository\nmallory,{repo}\n")
    (course / "grades" / "results" / "mallory.json").write_text(json.dumps(a_result("mallory", commit, 5.0)))
    (course / "scores").mkdir()
    (course / "scores" / "mallory.toml").write_text("".join(
        f'{item.id} = {{ points = 0, comment = "The grader\'s comment on {item.id}." }}\n'
        for item in rubric.load().items))
    site = root / "site"
    result = subprocess.run([sys.executable, "-m", "grading", "review", str(repo), "--course", str(course), "--out",
                             str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return site / "students" / "mallory" / "index.html"


def test_the_hostile_readmes_math_is_bounded_and_nothing_needing_trust_is_rendered(hostile_site):
    page = hostile_site.read_text()
    assert '<div style="position:fixed' not in page and "lime.png" in page
    with open_page() as browser:
        browser.goto(hostile_site.as_uri())
        browser.wait_for_function("document.body.dataset.math === 'typeset'", timeout=10_000)
        readme = browser.locator("article.readme")
        assert readme.locator("a[href^='https://example.com']").count() == 0, "\\href rendered without trust"
        errors = readme.locator(".katex-error").evaluate_all("errors => errors.map(e => e.title)")
        assert any("Too many expansions" in error for error in errors), errors
        rules = browser.evaluate("[...document.querySelectorAll('article .katex-rule')].map(rule => "
                                 "rule.getBoundingClientRect().height / parseFloat(getComputedStyle(rule).fontSize))")
        assert len(rules) > 40 and max(rules) < 10.1, f"rules {max(rules):.0f} em tall: maxSize caps them at 10"


def test_nothing_the_student_writes_is_drawn_over_the_grade_the_rubric_or_the_feedback(hostile_site, tmp_path):
    with open_page(width=1400, height=1000) as browser:
        browser.goto(hostile_site.as_uri())
        browser.wait_for_function("document.body.dataset.math === 'typeset'", timeout=10_000)
        for name, selector in PROTECTED.items():
            box = browser.locator(selector)
            assert box.count() == 1, selector
            box.scroll_into_view_if_needed()
            browser.screenshot(path=str(tmp_path / f"hostile_review_page_{name}.png"))
            # every point of a 9 × 9 grid inside the box (as far as the window shows it) must hit the box itself
            covered = browser.evaluate("""selector => {
                const box = document.querySelector(selector);
                const r = box.getBoundingClientRect();
                const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, window.innerHeight);
                const left = Math.max(r.left, 0), right = Math.min(r.right, window.innerWidth);
                const hits = [];
                for (let i = 1; i < 10; i++) for (let j = 1; j < 10; j++) {
                    const x = left + (right - left) * i / 10, y = top + (bottom - top) * j / 10;
                    const found = document.elementFromPoint(x, y);
                    if (!found || !box.contains(found)) hits.push([Math.round(x), Math.round(y),
                        found ? found.tagName + '.' + found.className : 'nothing']);
                }
                return hits;
            }""", selector)
            assert covered == [], f"{selector} is covered at {covered[:5]}"
        assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), \
            "the student's content widened the page"
        assert browser.problems == []
