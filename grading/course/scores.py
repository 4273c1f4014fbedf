"""The rubric items graded by hand: one TOML file per student, COURSE/scores/<student>.toml.

    [W1]                      # an item of the rubric, by its id
    points = 0.5              # from 0 to the item's points; leave it out until the item is graded
    comment = "Clear table."  # what the student reads in their feedback

    [[adjustments]]           # points added or taken off by hand (an integrity case, a grader's mistake)
    points = -1
    comment = "…"             # required: the student reads why

    [[requests]]              # a regrade request (python -m grading request writes it)
    item = "W3"               # a rubric item, or a graded test's name
    received = 2026-10-05T09:00:00Z
    request = "…"             # the student's words, for the course staff (never copied into feedback)
    response = ""             # the course staff's answer: the student reads it, with the points before and after

`python -m grading scores COURSE` writes a file for each student of the roster that has none (every item
listed, no points yet) and checks every file: an unknown item, points over the item's maximum or under 0,
a file for a student who is not in the class: one line each. TOML is read with tomllib; the files are the
instructor's, edited by hand, so nothing here rewrites them except to append a request at the end.
"""

import json
import math
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from grading.course.rubric import Rubric
from grading.errors import GradingError


class ScoresError(GradingError):
    """Scores that cannot be used: one line per problem."""


@dataclass
class Scores:
    student: str
    points: dict = field(default_factory=dict)  # item id -> points (graded items only)
    comments: dict = field(default_factory=dict)  # item id -> comment
    adjustments: list = field(default_factory=list)  # (points, comment)
    requests: list = field(default_factory=list)  # dicts: item, received, request, response


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes (\\" \\\\ \\n \\t \\uXXXX) are all valid TOML."""
    return json.dumps(text, ensure_ascii=False)


def skeleton(rubric: Rubric, student: str, commit: str = "") -> str:
    lines = [f"# Rubric scores for {student}" + (f", commit {commit[:12]}" if commit else "") + ".",
             "# For each item: points, from 0 to its maximum (leave the line commented out until you have graded it),",
             "# and a comment the student reads in their feedback. Checked by `python -m grading scores`.", ""]
    for item in rubric.items:
        lines += [f"[{item.id}]  # {item.title} ({item.question}): up to {item.points:g}" + (", bonus" if item.bonus else ""),
                  "# points = ", 'comment = ""', ""]
    return "\n".join(lines)


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse(path: Path, rubric: Rubric, tests: set = frozenset()) -> tuple[Scores, list[str]]:
    """A student's scores and the problems with them (one line each); `tests` are the graded tests' names
    (what a request may name besides a rubric item)."""
    student = path.stem
    scores, problems = Scores(student), []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return scores, [f"{path}: cannot read it ({error})"]
    except tomllib.TOMLDecodeError as error:
        return scores, [f"{path}: not valid TOML: {error}"]
    ids = [item.id for item in rubric.items]
    for key, value in data.items():
        if key == "adjustments":
            for index, entry in enumerate(value if isinstance(value, list) else [value], start=1):
                if (not isinstance(entry, dict) or not number(entry.get("points"))
                        or not isinstance(entry.get("comment"), str) or not entry["comment"].strip()
                        or set(entry) - {"points", "comment"}):
                    problems.append(f"{path}: [[adjustments]] number {index} needs points (a number) and a comment "
                                    "(text the student reads), nothing else")
                else:
                    scores.adjustments.append((entry["points"], entry["comment"].strip()))
        elif key == "requests":
            for index, entry in enumerate(value if isinstance(value, list) else [value], start=1):
                problem = request_problem(entry, ids, tests)
                if problem:
                    problems.append(f"{path}: [[requests]] number {index}: {problem}")
                else:
                    scores.requests.append({"item": entry["item"], "received": entry.get("received"),
                                            "request": entry.get("request", ""),
                                            "response": entry.get("response", "").strip()})
        elif rubric.item(key) is None:
            problems.append(f"{path}: [{key}] is not a rubric item ({', '.join(ids)})")
        elif not isinstance(value, dict):
            problems.append(f"{path}: {key} must be a table: [{key}] with points and comment")
        else:
            item = rubric.item(key)
            for extra in sorted(set(value) - {"points", "comment"}):
                problems.append(f"{path}: [{key}] unknown key {extra!r} (points, comment)")
            if "comment" in value and not isinstance(value["comment"], str):
                problems.append(f"{path}: [{key}] comment must be text")
            elif value.get("comment", "").strip():
                scores.comments[key] = value["comment"].strip()
            if "points" in value:
                points = value["points"]
                if not number(points):
                    problems.append(f"{path}: [{key}] points must be a number, not {points!r}")
                elif points < 0 or points > item.points + 1e-9:
                    problems.append(f"{path}: [{key}] points = {points:g} is outside 0 … {item.points:g}")
                else:
                    scores.points[key] = points
    return scores, problems


def request_problem(entry, ids: list[str], tests: set) -> str:
    if not isinstance(entry, dict):
        return "must be a table"
    extra = set(entry) - {"item", "received", "request", "response"}
    if extra:
        return f"unknown key(s) {', '.join(sorted(extra))} (item, received, request, response)"
    if entry.get("item") not in ids and entry.get("item") not in tests:
        return f"item {entry.get('item')!r} is neither a rubric item nor a graded test"
    if not isinstance(entry.get("request", ""), str) or not isinstance(entry.get("response", ""), str):
        return "request and response must be text"
    if "received" in entry and not isinstance(entry["received"], datetime):
        return "received must be a date and time (2026-10-05T09:00:00Z)"
    return ""


def load_all(folder: Path, rubric: Rubric, students: list[str], tests: set = frozenset()) -> dict[str, Scores]:
    """Every student's scores (an empty record for a student without a file); ScoresError with every problem."""
    problems, found = [], {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix != ".toml":
                if not path.name.startswith("."):
                    problems.append(f"{path}: not a scores file (<student>.toml)")
                continue
            if path.stem not in students:
                problems.append(f"{path}: {path.stem} is not in the class (the roster)")
                continue
            found[path.stem], its_problems = parse(path, rubric, tests)
            problems += its_problems
    if problems:
        raise ScoresError("\n".join(problems))
    return {student: found.get(student, Scores(student)) for student in students}


def write_skeletons(folder: Path, rubric: Rubric, commits: dict[str, str]) -> list[str]:
    """A scores file for each student (student -> commit) that has none; the students it wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for student, commit in sorted(commits.items()):
        path = folder / f"{student}.toml"
        if not path.exists():
            path.write_text(skeleton(rubric, student, commit), encoding="utf-8")
            written.append(student)
    return written


def append_request(folder: Path, rubric: Rubric, student: str, students: list[str], item: str, text: str,
                   tests: set = frozenset(), when: datetime = None) -> Path:
    """Notes a regrade request at the end of the student's scores file (created if needed)."""
    if student not in students:
        raise ScoresError(f"{student} is not in the class (the roster)")
    if rubric.item(item) is None and item not in tests:
        raise ScoresError(f"{item!r} is neither a rubric item ({', '.join(i.id for i in rubric.items)}) nor a "
                          "graded test")
    if not text.strip():
        raise ScoresError("the request is empty: give the student's words")
    path = folder / f"{student}.toml"
    if not path.exists():
        write_skeletons(folder, rubric, {student: ""})
    received = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = ["", "[[requests]]", f"item = {toml_string(item)}", f"received = {received}",
             f"request = {toml_string(text.strip())}",
             'response = ""  # your answer: the student reads it, with the points before and after', ""]
    with open(path, "a", encoding="utf-8") as file:
        file.write("\n".join(entry))
    _, problems = parse(path, rubric, tests)
    if problems:  # the file had problems before: say so now rather than at the gradebook
        raise ScoresError("\n".join(problems))
    return path
