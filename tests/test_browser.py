"""The offline browser harness the page checks rely on: what it serves, what it blocks."""

from tests.browser import open_page


def test_requests_that_leave_the_machine_are_blocked_and_reported(tmp_path):
    page_file = tmp_path / "page.html"
    page_file.write_text('<html><body><script src="https://example.com/tracker.js"></script></body></html>')
    with open_page() as page:
        page.goto(page_file.as_uri())
        assert any("blocked request to https://example.com/tracker.js" in problem for problem in page.problems)


def test_cdn_libraries_are_answered_from_node_modules(tmp_path):
    page_file = tmp_path / "page.html"
    page_file.write_text('<html><body><script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/'
                         'require.min.js"></script></body></html>')
    with open_page() as page:
        page.goto(page_file.as_uri())
        assert page.evaluate("typeof requirejs") == "function"
        assert page.problems == []
