"""The synthetic class, regraded once per session: tests/instructor/test_regrade.py checks the grades,
tests/instructor/test_review.py the site built from them."""

import pytest

from synthetic_submissions import DEADLINE, LIMITS, class_of_submissions, make_release, regrade


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """(name -> submission, the regrade's out directory, its printed progress, the path `escapes` tried to
    write) after one regrade of the synthetic class at the deadline."""
    root = tmp_path_factory.mktemp("class")
    release = make_release(root / "release")
    outside = root / "outside" / "was_here.txt"
    outside.parent.mkdir()
    made = class_of_submissions(release, root / "submissions", outside)
    out = root / "grades"
    result = regrade(*map(str, made.values()), "--out", str(out), "--deadline", DEADLINE, "--release", str(release),
                     *LIMITS)
    assert result.returncode == 0, result.stdout + result.stderr
    return made, out, result.stdout, outside
