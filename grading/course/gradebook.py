"""`python -m grading gradebook COURSE`: the grade of record of every student of the roster, from the regrade's
test points (scaled by the rubric), the items graded by hand, adjustments, and the late penalty; and each
student's feedback.

It reads COURSE/roster.csv, COURSE/collected.json (lateness), COURSE/grades/results/ (the regrade),
COURSE/scores/ (the instructor's scores) and COURSE/similarity/pairs.csv when there is one, and writes

    COURSE/final/gradebook.csv     one row per student: final grade, each part, days late, penalty, status, flags
    COURSE/final/state.json        the same, whole: what `export` and `feedback` read
    COURSE/final/feedback/<s>.md   the student's feedback: every part's points, the staff's comments, the
                                   regrades, lateness, and the regrade's own test feedback

A student is `complete` when every item that is not a bonus has points (an ungraded bonus counts 0); one with
nothing to grade (not collected, no commit in time, refused by the regrade) gets 0 for what has no points.
Once grades are published (`python -m grading feedback`), every later change of a student's points is a
regrade: this command lists it, with old and new points and why, and the feedback says it to the student.
Every word of the feedback is the grader's or the course staff's: nothing a student wrote is copied into it.
"""

import csv
import json
import math
from pathlib import Path

from grading.course import collect, roster, scores
from grading.errors import GradingError
from grading.regrade.results import cell, format_points, read as read_record, test_details
from grading.course.rubric import Rubric

PUBLISHED = "published.json"


class CourseError(GradingError):
    """The course folder cannot give a gradebook: one line per problem."""


def rounded(value: float) -> float:
    """Two decimals, halves up (what a person checking by hand expects; Python's round() goes to even)."""
    return math.floor(value * 100 + 0.5 + 1e-9) / 100


def read_results(grades: Path) -> dict[str, dict]:
    return {path.stem: read_record(path, path.stem) for path in sorted((grades / "results").glob("*.json"))}


def test_names(results: dict) -> set:
    return {row["name"] for result in results.values() for row in result.get("tests", [])}


def similar_partners(course: Path) -> dict[str, list[str]]:
    """student -> the students the similarity report flags them with."""
    path = course / "similarity" / "pairs.csv"
    partners = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                if row.get("flagged") == "yes":
                    partners.setdefault(row["student_a"], []).append(f"{row['student_b']} ({row['similarity']})")
                    partners.setdefault(row["student_b"], []).append(f"{row['student_a']} ({row['similarity']})")
    return partners


def student_record(student: roster.Student, rubric: Rubric, result: dict, collected: dict, deadline,
                   marks: scores.Scores, course: Path) -> dict:
    """One student's row of the gradebook (see the module docstring)."""
    entry = collected.get(student.student, {})
    problem = ""
    if result is None:
        problem = entry.get("problem") or "not regraded (run python -m grading regrade on COURSE/submissions)"
    elif result["status"].startswith("not graded"):
        problem = entry.get("problem") or result["status"][len("not graded: "):]
    record = {"student": student.student, "name": student.name or student.student,
              "commit": (result or {}).get("commit", ""), "problem": problem}
    tests = {row["name"]: {"earned": row["earned"], "points": row["points"], "outcome": row["outcome"],
                           "hidden": row["hidden"]} for row in (result or {}).get("tests", [])}
    earned = sum(row["earned"] for row in tests.values())
    possible = sum(row["points"] for row in tests.values())
    record.update(tests=tests, test_points=earned, test_max=possible,
                  autograded=earned * rubric.autograded / possible if possible else 0.0)
    items, missing = {}, []
    for item in rubric.items:
        points = marks.points.get(item.id)
        if points is None and not item.bonus and not problem:
            missing.append(item.id)
        items[item.id] = points
    record.update(items=items, comments=dict(marks.comments), adjustments=[list(pair) for pair in marks.adjustments],
                  requests=[{**request, "received": str(request["received"] or "")} for request in marks.requests])
    days, notes = 0, []
    if record["commit"] and deadline is not None and entry.get("fetches") is not None:
        mirror = course / "submissions" / f"{student.student}.git"
        found = collect.lateness(mirror, record["commit"], deadline, rubric.late, entry["fetches"],
                                student.extension_days)
        days, notes = found.days, found.notes
    elif record["commit"] and (result or {}).get("deadline"):  # not collected: the regrade's --deadline counted
        days = result["days_late"]
        notes = [f"days late counted by the regrade from the commit date, deadline {result['deadline']}",
                 *result["late_notes"]]
    penalty = days * rubric.late.penalty_per_day
    parts = record["autograded"] + sum(points or 0 for points in items.values()) + sum(p for p, _ in marks.adjustments)
    record.update(days_late=days, penalty=penalty, late_notes=notes, total=rounded(parts), missing=missing,
                  final=rounded(max(0.0, parts - penalty)), autograded=rounded(record["autograded"]),
                  status=("not graded: " + problem) if problem else
                  ("missing scores: " + ", ".join(missing)) if missing else "complete",
                  tamper=(result or {}).get("tamper", []), review=(result or {}).get("review", []))
    return record


def build(course: Path, rubric: Rubric) -> dict:
    """The whole gradebook state: {"deadline", "students": {name: record}}; CourseError/ScoresError on bad input."""
    students = roster.read_roster(course)
    results = read_results(course / "grades")
    strangers = sorted(set(results) - {student.student for student in students})
    if strangers:
        raise CourseError(f"{course / 'grades'}: results for students not in the roster: {', '.join(strangers)}")
    marks = scores.load_all(course / "scores", rubric, [student.student for student in students], test_names(results))
    collected = collect.read_collected(course)
    deadline = collect.parse_when(collected["deadline"]) if collected.get("deadline") else None
    stale = []  # one commit per student: the one collect chose is the one graded
    for name, entry in collected.get("students", {}).items():
        graded = results.get(name, {}).get("commit")
        if graded and entry.get("submitted") and graded != entry["submitted"]:
            stale.append(f"{name}: the regrade graded {graded[:7]}, but collect chose {entry['submitted'][:7]} "
                         "since: regrade COURSE/submissions (without --deadline) first")
    if stale:
        raise CourseError("\n".join(stale))
    partners = similar_partners(course)
    state = {"deadline": collected.get("deadline", ""), "students": {}}
    for student in students:
        record = student_record(student, rubric, results.get(student.student), collected.get("students", {}),
                                deadline, marks[student.student], course)
        record["similar_to"] = partners.get(student.student, [])
        state["students"][student.student] = record
    return state


# --- what changed since the grades were published ------------------------------------------------------------


def changes(old: dict, new: dict, rubric: Rubric) -> list[dict]:
    """Every part of a student's grade that differs from the published state: what, old, new, why."""
    found = []
    for name, record in new["students"].items():
        before = old.get("students", {}).get(name)
        if before is None:
            continue
        answers = {}
        for request in record["requests"]:
            if request["response"]:
                answers[request["item"]] = f"your regrade request: {request['response']}"

        def note(what, old_points, new_points, why):
            found.append({"student": name, "what": what, "old": old_points, "new": new_points, "why": why})

        for test, row in record["tests"].items():
            previous = before["tests"].get(test)
            if previous is not None and previous["earned"] != row["earned"]:
                why = answers.get(test, f"the regrade of commit {record['commit'][:7]}: {previous['outcome']} → "
                                        f"{row['outcome']}")
                note(f"test {test}", previous["earned"], row["earned"], why)
        for item in rubric.items:
            old_points, new_points = before["items"].get(item.id), record["items"].get(item.id)
            if old_points != new_points:
                why = answers.get(item.id) or (f"the course staff's comment: {record['comments'][item.id]}"
                                               if item.id in record["comments"] else "rescored by the course staff")
                note(f"{item.id} {item.title}", old_points, new_points, why)
        old_adjust = sum(points for points, _ in before["adjustments"])
        new_adjust = sum(points for points, _ in record["adjustments"])
        if old_adjust != new_adjust:
            note("adjustments", old_adjust, new_adjust, "; ".join(comment for _, comment in record["adjustments"]))
        if before["days_late"] != record["days_late"]:
            note("days late", before["days_late"], record["days_late"], "; ".join(record["late_notes"]) or
                 "the graded commit changed")
        if before["final"] != record["final"]:
            note("grade", before["final"], record["final"], "the sum of the parts above")
    return found


# --- files ---------------------------------------------------------------------------------------------------


def out(value) -> str:
    """A gradebook cell: our own numbers as they are (a negative adjustment stays a number), text made safe
    for spreadsheets."""
    return format_points(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else cell(value)


def write_gradebook(path: Path, state: dict, rubric: Rubric):
    items = [item.id for item in rubric.items]
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "name", "commit", "final", "total", "autograded", "test_points", *items,
                         "adjustments", "days_late", "penalty", "status", "similar_to", "tamper", "review", "notes"])
        for record in state["students"].values():
            writer.writerow([out(value) for value in (
                record["student"], record["name"], record["commit"][:12], record["final"], record["total"],
                record["autograded"], record["test_points"],
                *("" if record["items"][item] is None else record["items"][item] for item in items),
                sum(points for points, _ in record["adjustments"]), record["days_late"], record["penalty"],
                record["status"], "; ".join(record["similar_to"]), len(record["tamper"]) or "",
                len(record["review"]) or "", "; ".join(record["late_notes"]))])


def out_of(rubric: Rubric) -> str:
    """What the grade is out of: '10 (+3 bonus)'."""
    return format_points(rubric.total) + (f" (+{format_points(rubric.bonus)} bonus)" if rubric.bonus else "")


def grade_parts(record: dict, rubric: Rubric) -> list[tuple[str, str, str]]:
    """The parts of a student's grade, summed as the gradebook sums them: (what, points, out of) for the
    review site; the feedback lists every item."""
    given = {item.id: record["items"].get(item.id) for item in rubric.items}
    parts = [(f"the graded tests ({format_points(record['test_points'])} of {format_points(record['test_max'])} "
              "test points, scaled)", format_points(record["autograded"]), format_points(rubric.autograded)),
             ("the rubric's items" + (f" ({len(record['missing'])} not graded yet)" if record.get("missing") else ""),
              format_points(rounded(sum(given[item.id] or 0 for item in rubric.items if not item.bonus))),
              format_points(rubric.graded_by_hand)),
             ("bonus", format_points(rounded(sum(given[item.id] or 0 for item in rubric.items if item.bonus))),
              format_points(rubric.bonus))]
    if record["adjustments"]:
        parts.append((f"adjustments ({len(record['adjustments'])})",
                      format_points(rounded(sum(points for points, _ in record["adjustments"]))), ""))
    if record["days_late"]:
        parts.append((f"late: {record['days_late']} day(s) × {format_points(rubric.late.penalty_per_day)}",
                      format_points(-record["penalty"]), ""))
    if record["requests"]:
        answered = sum(bool(request["response"]) for request in record["requests"])
        parts.append((f"regrade requests: {answered} answered, {len(record['requests']) - answered} open", "", ""))
    return parts


def feedback_markdown(record: dict, rubric: Rubric, result: dict, regrades: list[dict]) -> str:
    """What the student reads (see the module docstring); `result` is the regrade's record of their tests."""
    lines = [f"# {rubric.title}: feedback for {record['student']}", ""]
    at = f", graded at commit `{record['commit'][:12]}`." if record["commit"] else "."
    if record.get("missing"):
        lines += [f"**Your grade so far: {format_points(record['final'])} / {out_of(rubric)}, provisional**{at}", "",
                  f"Not graded yet: {', '.join(record['missing'])}. They count 0 until the course staff grade "
                  "them, so this grade will change.", ""]
    else:
        lines += [f"**Your grade: {format_points(record['final'])} / {out_of(rubric)}**{at}", ""]
    if record["problem"]:
        lines += [f"Your submission was not graded: {record['problem']}.", ""]
    lines += ["| part | points | out of |", "| --- | ---: | ---: |",
              f"| the graded tests ({format_points(record['test_points'])} of {format_points(record['test_max'])} "
              f"test points, scaled) | {format_points(record['autograded'])} | {format_points(rubric.autograded)} |"]
    for item in rubric.items:
        given = format_points(record["items"][item.id], missing="not graded yet" if item.id in record.get(
            "missing", ()) else "–")
        lines.append(f"| {item.id} {item.title}{' (bonus)' if item.bonus else ''} | {given} | "
                     f"{format_points(item.points)} |")
    for value, comment in record["adjustments"]:
        lines.append(f"| adjustment: {comment.splitlines()[0]} | {'+' if value > 0 else ''}{format_points(value)} | |")
    if record["days_late"]:
        lines.append(f"| late: {record['days_late']} day(s) × {format_points(rubric.late.penalty_per_day)} | "
                     f"{format_points(-record['penalty'])} | |")
    lines += [f"| **grade{' so far' if record.get('missing') else ''}** | **{format_points(record['final'])}** | "
              f"**{out_of(rubric)}** |", ""]
    commented = [item for item in rubric.items if item.id in record["comments"]]
    if commented:
        lines += ["## Comments from the course staff", ""]
        for item in commented:
            lines += [f"**{item.id} {item.title}** ({format_points(record['items'][item.id])} / "
                      f"{format_points(item.points)}): {record['comments'][item.id]}", ""]
    if regrades:
        lines += ["## Regrades", ""]
        lines += [f"- {change['what']}: {format_points(change['old'])} → {format_points(change['new'])} "
                  f"({change['why']})" for change in regrades] + [""]
    open_requests = [request for request in record["requests"] if not request["response"]]
    if open_requests:
        lines += ["Your regrade request(s) on " + ", ".join(request["item"] for request in open_requests)
                  + " are being looked at.", ""]
    if record["days_late"] or record["late_notes"]:
        lines += ["## Lateness", "", f"{record['days_late']} day(s) late after the deadline {record.get('deadline', '')}"
                  .rstrip() + "."] + [f"- {note}" for note in record["late_notes"]] + [""]
    details = test_details(result) if result else []
    if details:
        lines += ["## The graded tests", ""] + [line.replace("## ", "### ", 1) if line.startswith("## ") else line
                                                for line in details]
    return "\n".join(lines).rstrip("\n") + "\n"


def regrade_log(course: Path) -> list[dict]:
    path = course / "final" / "regrades.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def as_number(text: str):
    return None if text in ("", "None") else float(text)


def write_all(course: Path, rubric: Rubric, log=print) -> dict:
    """Builds the gradebook, writes COURSE/final/, prints the changes since publication; returns the state."""
    state = build(course, rubric)
    final = course / "final"
    (final / "feedback").mkdir(parents=True, exist_ok=True)
    published = final / PUBLISHED
    pending = changes(json.loads(published.read_text()), state, rubric) if published.exists() else []
    state["pending"] = pending
    earlier = regrade_log(course)
    results = read_results(course / "grades")
    for name, record in state["students"].items():
        record["deadline"] = state["deadline"]
        history = [{**row, "old": as_number(row["old"]), "new": as_number(row["new"])} for row in earlier
                   if row["student"] == name] + [change for change in pending if change["student"] == name]
        text = feedback_markdown(record, rubric, results.get(name), history)
        (final / "feedback" / f"{name}.md").write_text(text, encoding="utf-8")
    write_gradebook(final / "gradebook.csv", state, rubric)
    collect.write_json(final / "state.json", state)
    for change in pending:
        log(f"{change['student']}: {change['what']}: {format_points(change['old'])} → {format_points(change['new'])} "
            f"({change['why']})")
    counts = {}
    for record in state["students"].values():
        counts[record["status"].split(":")[0]] = counts.get(record["status"].split(":")[0], 0) + 1
    log(f"wrote {final / 'gradebook.csv'}: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    return state
