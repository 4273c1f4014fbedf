"""The class: COURSE/roster.csv, one student a line, read and checked (`read_roster`), and the course folder
that holds it (grading/course/__init__.py says what else the folder holds).

    student,repository[,name,canvas_id,sis_user_id,sis_login_id,section,extension_days]

`student` names the student's files and folders (COURSE/submissions/<student>.git, scores/<student>.toml);
`repository` is what `collect` fetches; the Canvas columns are what `export` needs to find the student.
"""

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from grading.errors import GradingError

STUDENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
COLUMNS = ("student", "repository", "name", "canvas_id", "sis_user_id", "sis_login_id", "section", "extension_days")


class RosterError(GradingError):
    """The roster or the course folder cannot be used: one line per problem."""


@dataclass(frozen=True)
class Student:
    student: str  # the name everything is filed under: COURSE/submissions/<student>.git, scores/<student>.toml
    repository: str  # a URL git can fetch, or a path
    name: str = ""  # as the LMS shows it ("Last, First"); the student name if empty
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    extension_days: float = 0.0


def read_roster(course: Path) -> list[Student]:
    """The class, from COURSE/roster.csv, checked: one line per problem."""
    path = course / "roster.csv"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"{path}: no roster (a CSV with the columns student,repository)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RosterError(f"{path}: cannot read it as UTF-8 text ({error})") from None
    reader = csv.DictReader(text.splitlines())
    header = [column.strip() for column in reader.fieldnames or []]
    problems = []
    missing = [column for column in ("student", "repository") if column not in header]
    if missing:
        raise RosterError(f"{path}: the first line must name the columns student,repository (missing: "
                          f"{', '.join(missing)})")
    for column in header:
        if column not in COLUMNS:
            problems.append(f"{path}: unknown column {column!r} (the columns are {', '.join(COLUMNS)})")
    students, seen = [], {}
    for line, row in enumerate(reader, start=2):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key is not None}
        if not any(row.values()):
            continue
        where = f"{path}:{line}"
        name, repository = row.get("student", ""), row.get("repository", "")
        if not STUDENT_NAME.fullmatch(name) or name.endswith(".git"):
            problems.append(f"{where}: student {name!r} must be letters, digits, '-', '_' or '.' (it names folders)")
            continue
        if name in seen:
            problems.append(f"{where}: student {name} is also on line {seen[name]}")
            continue
        seen[name] = line
        if not repository:
            problems.append(f"{where}: student {name} has no repository")
            continue
        if repository.startswith("-") or "::" in repository or any(ord(char) < 32 for char in repository):
            # git reads "<transport>::<address>" as a helper to run, and a leading '-' as an option
            problems.append(f"{where}: repository {repository!r} of {name} is not a URL or a path git fetches "
                            "plainly (https://, ssh://, git@host:path, a folder)")
            continue
        try:
            extension = float(row.get("extension_days") or 0)
            if not math.isfinite(extension) or extension < 0:
                raise ValueError
        except ValueError:
            problems.append(f"{where}: extension_days must be a number of days, 0 or more, not "
                            f"{row.get('extension_days')!r}")
            continue
        students.append(Student(name, repository, *(row.get(column, "") for column in COLUMNS[2:7]), extension))
    if not students and not problems:
        problems.append(f"{path}: no students")
    if problems:
        raise RosterError("\n".join(problems))
    return students


def course_folder(text: str) -> Path:
    """The course folder named on the command line, refused unless it holds a roster."""
    course = Path(text)
    if not (course / "roster.csv").is_file():
        raise RosterError(f"{course}: not a course folder (it needs roster.csv: student,repository per line)")
    return course
