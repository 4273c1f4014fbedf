"""The regrade's outputs: one results record per student, the gradebook CSV, the feedback files.

A results record (results/<student>.json) holds the commit, status, tamper flags, review flags (code a
model file has no need for), notes (what stopped the sandbox, what was refused), and one row per graded
test function: points, earned, outcome (passed, failed, timeout, crashed, not run) and the message the
judge wrote (expected, got, by how much, the tolerance, the likely mistake, the README section). Every
message a student reads is the grader's own: nothing their code printed or raised is copied into it.
"""

import csv
import json
from collections import Counter
from pathlib import Path

from grading.errors import GradingError
from grading.publish.template import TOTAL_POINTS

# What every reader of a results record relies on (the gradebook, the review site, merge).
RECORD_KEYS = ("name", "commit", "grade", "public", "hidden", "status", "tamper", "review", "notes", "tests")


class ResultsError(GradingError):
    """A results record that cannot be used: said in one line, with what to do."""


def read(path: Path, name: str) -> dict:
    """The results record of student `name` in `path` (results/<name>.json), checked: a JSON object with
    every key in RECORD_KEYS, a row per test, and its own name. ResultsError otherwise."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ResultsError(f"{path}: unreadable ({error}); regrade that student") from None
    if not isinstance(record, dict) or not set(RECORD_KEYS) <= set(record) or not isinstance(record["tests"], list) \
            or not all(isinstance(row, dict) and "name" in row for row in record["tests"]):
        raise ResultsError(f"{path}: not a results record that the regrade writes; regrade that student")
    if record["name"] != name:
        raise ResultsError(f"{path}: the record of {record['name']!r}, not of {name!r}; regrade that student")
    return record


def summarise(submission, tests: list[dict], verdicts: dict, flags: list[str], review: list[str], notes: list[str],
              seconds: float, key: str, problem: str = "") -> dict:
    """The results record of one submission from the judge's verdicts (test name -> Verdict)."""
    rows = []
    for test in tests:
        verdict = verdicts.get(test["name"])
        outcome, message = (verdict.outcome, verdict.message) if verdict else ("not run", problem)
        if outcome != "passed" and test["readme"]:
            message = f"{message}\n  reread README section '{test['readme']}'" if message else message
        rows.append({**test, "outcome": outcome, "message": message,
                     "earned": test["points"] if outcome == "passed" else 0.0})
    public = [row for row in rows if not row["hidden"]]
    hidden = [row for row in rows if row["hidden"]]
    score = {name: sum(row[key_] for row in group) for name, group, key_ in (
        ("public", public, "earned"), ("public_max", public, "points"),
        ("hidden", hidden, "earned"), ("hidden_max", hidden, "points"))}
    possible = score["public_max"] + score["hidden_max"]
    grade = round((score["public"] + score["hidden"]) * TOTAL_POINTS / possible, 2) if possible else 0.0
    return {"name": submission.name, "path": str(submission.path), "commit": submission.commit, "key": key,
            "status": status(rows, problem), "tamper": flags, "review": review, "notes": notes,
            "grade": grade, **score, "seconds": round(seconds, 1), "tests": rows}


def status(rows: list[dict], problem: str) -> str:
    """ok, or what went wrong: 'not graded: ...', '1 timeout, 2 crashed'."""
    if problem:
        return f"not graded: {problem}"
    counts = Counter(row["outcome"] for row in rows if row["outcome"] in ("timeout", "crashed", "not run"))
    if not counts:
        return "ok"
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))


def progress_line(result: dict) -> str:
    commit = result["commit"][:7] or "-"
    grade = f"{format_points(result['grade'])}/{format_points(TOTAL_POINTS)}"
    if result.get("cached"):
        return f"{result['name']} ({commit}): unchanged since the last run, {grade}"
    flags = f"; TAMPER: {len(result['tamper'])} file(s)" if result["tamper"] else ""
    review = f"; review: {len(result['review'])} flag(s)" if result["review"] else ""
    late = f", {late_words(result['days_late'])}" if result.get("days_late") else ""
    return (f"{result['name']} ({commit}): {grade} (public {format_points(result['public'])}/"
            f"{format_points(result['public_max'])}, hidden {format_points(result['hidden'])}/"
            f"{format_points(result['hidden_max'])}), {result['status']}{late}{flags}{review}, "
            f"{result['seconds']:g} s")


def late_words(days: int) -> str:
    return f"{days} day{'s' if days != 1 else ''} late"


# --- files ---------------------------------------------------------------------------------------------------


def write_student(out: Path, result: dict):
    """results/<name>.json and feedback/<name>.md."""
    for folder in ("results", "feedback"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    record = {key: value for key, value in result.items() if key != "cached"}
    (out / "results" / f"{result['name']}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / "feedback" / f"{result['name']}.md").write_text(feedback_markdown(result))


def format_points(value, missing: str = "–") -> str:
    """Points as every file, page and line shows them: 11, 11.25, 0.5, never 11.0; `missing` for None."""
    if value is None:
        return missing
    text = f"{value:g}"
    return "0" if text == "-0" else text


def cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: a leading =, +, -, @ or control character starts a formula."""
    text = value if isinstance(value, str) else format_points(value) if isinstance(value, float) else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_gradebook(path: Path, results: list[dict], tests: list[dict]):
    """One row per student, one column per graded test function (points earned), totals and flags."""
    columns = [("hidden: " if test["hidden"] else "") + test["name"] for test in tests]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "commit", "grade", "public", "hidden", "status", "days_late", "tamper", "review",
                         "notes", *columns])
        for result in results:
            earned = {("hidden: " if row["hidden"] else "") + row["name"]: row["earned"] for row in result["tests"]}
            writer.writerow([cell(value) for value in (
                result["name"], result["commit"], result["grade"], result["public"], result["hidden"],
                result["status"], result.get("days_late", ""), "; ".join(result["tamper"]),
                "; ".join(result["review"]), "; ".join(result["notes"] + result.get("late_notes", [])),
                *(earned.get(column, 0.0) for column in columns))])


def feedback_markdown(result: dict) -> str:
    """What the student reads: the grade, what failed and by how much, which README sections to reread."""
    lines = [f"# Feedback for {result['name']}", ""]
    if result["status"].startswith("not graded"):
        return "\n".join(lines + [f"Your submission was {result['status']}.", ""])
    shown = {key: format_points(result[key]) for key in ("grade", "public", "public_max", "hidden", "hidden_max")}
    total = format_points(TOTAL_POINTS)
    lines += [f"Commit `{result['commit'][:12]}`: **{shown['grade']} / {total}**, from the public tests "
              f"({shown['public']} / {shown['public_max']}) and the hidden tests ({shown['hidden']} / "
              f"{shown['hidden_max']}): grade = (public + hidden) × {total} / "
              f"{format_points(result['public_max'] + result['hidden_max'])}.", ""]
    if result.get("days_late"):
        lines += [f"Commit `{result['commit'][:12]}` is {late_words(result['days_late'])} after the deadline "
                  f"{result['deadline']}: the late policy takes {format_points(result['late_penalty'])} point(s) "
                  "off the assignment's grade, on top of the tests' grade above.", ""]
    return "\n".join(lines + test_details(result)) + "\n"


def test_details(result: dict) -> list[str]:
    """The tests' part of the feedback, without a grade (the course's feedback gives its own): files that
    were not used, the README sections to reread, what failed, and the table of every test."""
    if result["status"].startswith("not graded"):
        return []
    lines = []
    if result["tamper"]:
        lines += [f"**{len(result['tamper'])} file(s) you were not meant to change differ from the assignment.** "
                  "They were not used: your grade comes from the course staff's copies of the tests.", ""]
    failed = [row for row in result["tests"] if row["outcome"] != "passed"]
    if failed:
        sections = sorted({row["readme"] for row in failed if row["readme"]})
        if sections:
            lines += ["## README sections to reread", ""] + [f"- {section}" for section in sections] + [""]
        lines += ["## What failed", ""]
        by_message = {}  # a stub fails several tests with one message: show it once
        for row in failed:
            by_message.setdefault(row["message"].strip() or row["outcome"], []).append(row)
        for message, rows in by_message.items():
            for row in rows:
                kind = "hidden test" if row["hidden"] else "test"
                lines.append(f"- {row['question']} {kind} `{row['name']}`: 0 / {format_points(row['points'])} "
                             f"({row['outcome']})")
            lines += ["", "```", message.replace("```", "'''"), "```", ""]
    else:
        lines += ["Every test passed.", ""]
    lines += ["## All tests", "", "| question | test | earned | possible |", "| --- | --- | ---: | ---: |"]
    for row in result["tests"]:
        mark = "✅" if row["outcome"] == "passed" else "❌"
        kind = "hidden: " if row["hidden"] else ""
        lines.append(f"| {row['question']} | {mark} {kind}`{row['name']}` | {format_points(row['earned'])} | "
                     f"{format_points(row['points'])} |")
    return lines
