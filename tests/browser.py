"""Headless Chromium for the tests that must see a page as a person would (bertviz views, review site).

Pages are opened offline: every request to a CDN library that `LOCAL_LIBRARIES` knows is answered from
the npm packages of `package.json` (installed by `npm ci` into `node_modules/`), any other request that
leaves the machine is blocked and recorded, so a page that would be blank without the network fails.

    with open_page() as page:           # skips (or fails under PIGLATIN_REQUIRE_BROWSER=1) without Chromium
        page.goto(path.as_uri())
        page.wait_for_selector("svg line")
        assert not page.problems        # console errors, uncaught exceptions, blocked requests
"""

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
REQUIRE_BROWSER = "PIGLATIN_REQUIRE_BROWSER"

# cdnjs library name (https://cdnjs.cloudflare.com/ajax/libs/<name>/<version>/...) -> file of an npm package
LOCAL_LIBRARIES = {
    "require.js": "requirejs/require.js",
    "d3": "d3/dist/d3.min.js",
    "jquery": "jquery/dist/jquery.min.js",
}
CDNJS = re.compile(r"^https?://cdnjs\.cloudflare\.com/ajax/libs/(?P<name>[^/]+)/[^/]+/")

# Chromium's own background traffic is refused by a closed network, many connections at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def unavailable(reason: str):
    """Skip with the reason, unless CI asked for the browser checks to run (then it is a failure)."""
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason} ({REQUIRE_BROWSER}=1: browser checks may not skip here)")
    pytest.skip(reason)


def chromium_path():
    """The system Chromium (Debian's `chromium` package), or None."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def missing_requirement():
    """Why pages cannot be rendered here, in one line, or None when everything is in place."""
    if chromium_path() is None:
        return "no Chromium on this machine (Debian/Ubuntu: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -r requirements-optional.txt)"
    for library in LOCAL_LIBRARIES.values():
        if not (NODE_MODULES / library).is_file():
            return f"node_modules/{library} is missing: run `npm ci` in the repository root"
    return None


def local_file_for(url: str):
    """The npm file that stands in for a CDN `url`, or None when the URL is not a library we serve."""
    match = CDNJS.match(url)
    if not match or match["name"] not in LOCAL_LIBRARIES:
        return None
    return NODE_MODULES / LOCAL_LIBRARIES[match["name"]]


def is_local(url: str) -> bool:
    return url.startswith(("file:", "data:", "blob:", "about:")) or re.match(
        r"^https?://(127\.0\.0\.1|localhost)(:\d+)?/", url) is not None


@contextmanager
def open_page(width: int = 1200, height: int = 900):
    """A Playwright page in headless Chromium, offline, with `page.problems` collecting what went wrong.
    Outside a test, call `missing_requirement()` first: this skips the calling test when something is missing."""
    if reason := missing_requirement():
        unavailable(reason)  # before any page loads: inside Playwright's request handler a skip is lost
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.problems = []

            def route(route):
                url = route.request.url
                if (path := local_file_for(url)) is not None:
                    route.fulfill(path=str(path), content_type="application/javascript")
                elif is_local(url):
                    route.continue_()
                else:
                    page.problems.append(f"blocked request to {url}")
                    route.abort()

            page.route("**/*", route)
            page.on("console", lambda message: message.type == "error"
                    and page.problems.append(f"console error: {message.text}"))
            page.on("pageerror", lambda error: page.problems.append(f"uncaught exception: {error}"))
            yield page
        finally:
            browser.close()
