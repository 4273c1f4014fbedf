"""The rubric (grading/course/rubric.toml): it adds up, the README shows its points, and a rubric that is wrong in any
way is refused with one line per problem. (Instructor-only; seconds.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from grading.course import rubric
from synthetic_submissions import ROOT

GOOD = rubric.RUBRIC.read_text()


def grading(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    return path


def test_the_rubric_adds_up_to_ten_points_and_a_three_point_bonus():
    loaded = rubric.load()
    assert (loaded.total, loaded.autograded, loaded.graded_by_hand, loaded.bonus) == (10, 6, 4, 3)
    writeup = {f"W{n}" for n in range(1, 11)}
    assert writeup <= {item.id for item in loaded.items}, "every writeup section W1–W10 has points"
    assert {item.cell for item in loaded.items if item.notebook} == {
        "attention_reading", "embeddings_reading", "bilinear_derivation", "ssm_reading"}, "every answer cell too"


def test_the_readme_shows_every_items_points_as_the_rubric_gives_them():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rubric.readme_problems(readme, rubric.load()) == [], "run: python -m grading rubric --update-readme"
    assert "### W1 Transformer: model and data size (Q1, 0.5 points)" in readme
    assert "| Q2.1 derivation | Q2 | `notebooks/ssm.ipynb`, its answer cell | 0.5 |" in readme


def test_a_changed_rubric_is_caught_in_the_readme_and_update_readme_fixes_it(tmp_path):
    changed = rubric.load(written(tmp_path, GOOD.replace('id = "W1"\ntitle = "Transformer: model and data size"\n'
                                                         'question = "Q1"\npoints = 0.5',
                                                         'id = "W1"\ntitle = "Transformer: model and data size"\n'
                                                         'question = "Q1"\npoints = 0.75')
                                     .replace("total = 10", "total = 10.25")))
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8"))
    assert rubric.readme_problems(readme.read_text(), changed) == [
        "README.md: heading '### W1 Transformer: model and data size (Q1, 0.5 points)' should be "
        "'### W1 Transformer: model and data size (Q1, 0.75 points)'",
        "README.md: the points table in 'Your writeup' differs from the rubric"]
    assert rubric.update_readme(changed, readme) is True
    assert rubric.readme_problems(readme.read_text(), changed) == []
    assert "The assignment is worth 10.25 points" in readme.read_text()


@pytest.mark.parametrize("edit, message", [
    (("total = 10", "total = 9"), "the points do not add up: autograded 6 + items 4 = 10, but total = 9"),
    (('id = "W8"', 'id = "W11"'), "[[items]] W11: the README's 'Your writeup' has no section '### W11 …' "
                                  "(or give notebook and cell)"),
    (('cell = "ssm_reading"', 'cell = "ssm_answer"'), "[[items]] notebook-ssm: notebooks/ssm.ipynb has no answer "
                                                       "cell with grade_id 'ssm_answer'"),
    (("penalty_per_day = 1", "penalty_per_day = -1"), "[late] penalty_per_day must be a number, 0 or more, not -1"),
    (('points = 2\nbonus = true', 'points = "2"\nbonus = true'), "[[items]] W9: points must be a positive number, "
                                                                  "not '2'"),
    (("[late]", "[lateness]"), "unknown key 'lateness' (title, total, [autograded], [late], [[items]])"),
])
def test_a_wrong_rubric_is_refused_with_one_line_naming_the_problem(tmp_path, edit, message):
    assert GOOD.count(edit[0]) == 1
    path = written(tmp_path, GOOD.replace(*edit))
    result = grading("rubric", "--rubric", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert f"grading rubric: {path}: {message}" in result.stderr.splitlines()


def test_a_rubric_that_is_not_toml_is_refused_with_its_line(tmp_path):
    path = written(tmp_path, GOOD.replace("total = 10", "total = "))
    result = grading("rubric", "--rubric", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"grading rubric: {path}: not valid TOML: ") and "(at line 7, column 11)" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_the_rubric_stays_out_of_the_student_release():
    from grading.publish.template import is_instructor_only

    assert is_instructor_only("grading/course/rubric.toml"), "its grading guides are for the course staff only"
