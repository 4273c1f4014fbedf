"""Makes the screenshot of the review site kept in assets/: one student's page, from the synthetic class.

    python tests/instructor/review_screenshot.py assets/review_student_page.png

Builds a draft release and the synthetic submissions in a scratch folder, regrades three of them, builds
the review site and photographs the page of `partly` (a writeup with math and a plot; Q1 right but for a
mistake only the hidden tests see, Q2 not started) in headless Chromium (tests/browser.py).
"""

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]  # the helpers, tests/, the repository

from browser import open_page  # noqa: E402
from semester import rubric_without_late_days  # noqa: E402
from synthetic_submissions import DEADLINE, LIMITS, ROOT, class_of_submissions, make_release, regrade  # noqa: E402


def main(target: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="review-screenshot-") as scratch:
        scratch = Path(scratch)
        release = make_release(scratch / "release")
        (scratch / "outside").mkdir()
        made = class_of_submissions(release, scratch / "submissions", scratch / "outside" / "was_here.txt")
        chosen = [str(made[name]) for name in ("correct", "partly", "tampers")]
        result = regrade(*chosen, "--out", str(scratch / "grades"), "--deadline", DEADLINE, "--rubric",
                         str(rubric_without_late_days(scratch)), "--release", str(release), *LIMITS)
        if result.returncode:
            sys.exit(f"the regrade failed: {result.stderr.strip()}")
        subprocess.run([sys.executable, "-m", "grading", "review", *chosen, "--grades", str(scratch / "grades"),
                        "--out", str(scratch / "site")], cwd=ROOT, check=True, capture_output=True)
        with open_page(width=1280, height=1000) as page:
            page.goto((scratch / "site" / "students" / "partly" / "index.html").as_uri())
            page.wait_for_function("document.body.dataset.math === 'typeset'")
            page.screenshot(path=str(target), full_page=False)
            if page.problems:
                sys.exit(f"the page had problems: {page.problems}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/instructor/review_screenshot.py OUT.png")
    sys.exit(main(Path(sys.argv[1]).resolve()))
