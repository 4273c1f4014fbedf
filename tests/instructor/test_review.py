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
    page = student_page(site, "exits")
    assert 'href="../escapes/index.html"' in page and 'href="../floods/index.html"' in page
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
