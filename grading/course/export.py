"""Grades out to the LMS: `python -m grading export COURSE`, the gradebook as the file Canvas imports.

**Canvas.** Canvas imports a CSV whose header is `Student, ID, SIS User ID, SIS Login ID, Section`, then one
column per assignment named `Title (assignment id)`; a second row that starts `Points Possible` may give each
assignment's points. Canvas finds each student by ID (its user id), else by SIS User ID, else by SIS Login ID,
else by name; it finds the assignment by the id in parentheses, else by its title, else creates a new one. So
the roster must give every student at least one of canvas_id, sis_user_id, sis_login_id (Canvas's own export,
Grades → Export, lists them), and `--assignment-id` the number at the end of the assignment's Canvas address.
The cells hold the final grade: the late penalty applied, the bonus included (Canvas accepts scores over the
points possible). Nothing is exported while a student's scores are missing, unless `--partial` (then that
student's cell is left empty, which Canvas leaves unchanged).
"""

import csv
from pathlib import Path

from grading.course import roster
from grading.errors import GradingError
from grading.regrade.results import cell, format_points
from grading.course.rubric import Rubric


class ExportError(GradingError):
    """Grades that cannot go out: one line per problem."""


def canvas_rows(state: dict, students: list[roster.Student], rubric: Rubric, assignment_id: str = "",
                partial: bool = False) -> list[list[str]]:
    column = f"{rubric.title} ({assignment_id})" if assignment_id else rubric.title
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column],
            ["Points Possible", "", "", "", "", format_points(rubric.total)]]
    problems = []
    for student in students:
        record = state["students"].get(student.student)
        if not (student.canvas_id or student.sis_user_id or student.sis_login_id):
            problems.append(f"roster.csv: {student.student} has none of canvas_id, sis_user_id, sis_login_id: "
                            "Canvas could only guess the student from the name")
            continue
        if record is None:
            problems.append(f"{student.student}: not in the gradebook (run python -m grading gradebook)")
            continue
        grade = format_points(record["final"])
        if record["status"].startswith("missing scores"):
            if not partial:
                problems.append(f"{student.student}: {record['status']} (or --partial to leave the cell empty)")
                continue
            grade = ""
        rows.append([student.name or student.student, student.canvas_id, student.sis_user_id, student.sis_login_id,
                     student.section, grade])
    if problems:
        raise ExportError("\n".join(problems))
    return rows


def write_canvas(path: Path, state: dict, students: list, rubric: Rubric, assignment_id: str = "",
                 partial: bool = False):
    rows = canvas_rows(state, students, rubric, assignment_id, partial)
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([[cell(value) for value in row] for row in rows])
