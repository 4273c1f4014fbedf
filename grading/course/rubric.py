"""`python -m grading rubric`: the assignment's points, from one file the instructor edits (grading/course/rubric.toml).

The rubric gives points to the graded tests as a whole (the regrade's test points, scaled) and to each item
graded by hand: the README's writeup sections W1–W9, the notebooks' answer cells, the bonus; and it sets the
late-day policy. It is TOML, read with the standard library's tomllib: one plain file with comments, typed
numbers and lists of tables, and no dependency to install.

`load` refuses a rubric with one line per problem: an unknown key, an item whose README section or notebook
cell does not exist, points that are not positive numbers, items that do not add up to `total`. The README
shows every item's points (the table between the `rubric` markers in "Your writeup" and each section's
heading); `readme_problems` says where it differs and `update_readme` rewrites it from the rubric.
"""

import json
import math
import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from grading.errors import GradingError

REPO = Path(__file__).resolve().parents[2]
RUBRIC = Path(__file__).with_name("rubric.toml")
WRITEUP = "\n## Your writeup\n"
# The README's points table lies between these (students read them too: they name no instructor tool).
BEGIN = "<!-- rubric: begin (written from the course's rubric: change the rubric, not this table) -->"
END = "<!-- rubric: end -->"
ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RubricError(GradingError):
    """The rubric cannot be used: one line per problem."""


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    question: str
    points: float
    bonus: bool = False
    notebook: str = ""  # a notebook's answer cell (with `cell`, its nbgrader grade_id); else a README section
    cell: str = ""
    guide: str = ""  # for the course staff only

    @property
    def heading(self) -> str:
        """The README heading of a README item (without the ###)."""
        return f"{self.id} {self.title} ({self.question}, {points_text(self.points)})"

    @property
    def where(self) -> str:
        return f"`{self.notebook}`, its answer cell" if self.notebook else f"README, {self.id}"


@dataclass(frozen=True)
class Late:
    grace_minutes: float = 0
    penalty_per_day: float = 0
    max_days: int = 0


@dataclass(frozen=True)
class Rubric:
    title: str
    total: float
    autograded: float
    late: Late
    items: tuple = field(default_factory=tuple)
    path: Path = RUBRIC

    def item(self, item_id: str):
        return next((item for item in self.items if item.id == item_id), None)

    @property
    def graded_by_hand(self) -> float:
        return sum(item.points for item in self.items if not item.bonus)

    @property
    def bonus(self) -> float:
        return sum(item.points for item in self.items if item.bonus)


def points_text(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load(path: Path = RUBRIC, repo: Path = REPO) -> Rubric:
    """The rubric at `path`, checked against the README and notebooks of `repo`."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise RubricError(f"{path}: cannot read it ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RubricError(f"{path}: not valid TOML: {error}") from None
    problems = []

    def problem(text):
        problems.append(f"{path}: {text}")

    for key in sorted(set(data) - {"title", "total", "autograded", "late", "items"}):
        problem(f"unknown key {key!r} (title, total, [autograded], [late], [[items]])")
    title, total, autograded = check_totals(data, problem)
    late = check_late(data.get("late", {}), problem)
    items = check_items(data.get("items", []), repo, problem)
    rubric = Rubric(title, total, autograded, late, tuple(items), Path(path))
    counted = rubric.autograded + rubric.graded_by_hand
    if total and not math.isclose(counted, total):
        problem(f"the points do not add up: autograded {rubric.autograded:g} + items {rubric.graded_by_hand:g} "
                f"= {counted:g}, but total = {total:g}")
    if problems:
        raise RubricError("\n".join(problems))
    return rubric


def check_totals(data: dict, problem) -> tuple[str, float, float]:
    """(title, total, autograded points) of the rubric, each checked (0 or empty after saying what is wrong)."""
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        problem("title must be the assignment's name (text)")
        title = ""
    total = data.get("total")
    if not number(total) or total <= 0:
        problem("total must be a positive number: the assignment's points without the bonus")
        total = 0
    autograded = data.get("autograded", {})
    if not isinstance(autograded, dict) or not number(autograded.get("points")) or autograded["points"] < 0:
        problem("[autograded] points must be a number, 0 or more: what the graded tests are worth")
        autograded = {"points": 0}
    for key in sorted(set(autograded) - {"points"}):
        problem(f"[autograded]: unknown key {key!r} (points)")
    return title, total, autograded["points"]


def check_late(table, problem) -> Late:
    """The [late] table as a Late policy (what is wrong with it said, and left at 0)."""
    if not isinstance(table, dict):
        problem("[late] must be a table")
        return Late()
    for key in sorted(set(table) - {"grace_minutes", "penalty_per_day", "max_days"}):
        problem(f"[late]: unknown key {key!r} (grace_minutes, penalty_per_day, max_days)")
    values = {key: table.get(key, 0) for key in ("grace_minutes", "penalty_per_day", "max_days")}
    for key, value in values.items():
        if not number(value) or value < 0:
            problem(f"[late] {key} must be a number, 0 or more, not {value!r}")
            values[key] = 0
    if values["max_days"] != int(values["max_days"]):
        problem(f"[late] max_days must be a whole number of days, not {values['max_days']!r}")
    return Late(values["grace_minutes"], values["penalty_per_day"], int(values["max_days"]))


def check_items(raw_items, repo: Path, problem) -> list:
    """The [[items]] tables as Items: each checked against the README and notebooks of `repo`, ids unique."""
    if not isinstance(raw_items, list) or not raw_items:
        problem("[[items]]: the rubric has no items graded by hand")
        return []
    headings = writeup_headings((repo / "README.md").read_text(encoding="utf-8"))
    items = []
    for index, raw in enumerate(raw_items, start=1):
        item = check_item(raw, index, repo, headings, problem)
        if item is None:
            continue
        if any(other.id == item.id for other in items):
            problem(f"[[items]] {item.id}: two items have this id")
            continue
        items.append(item)
    return items


def check_item(raw, index: int, repo: Path, headings: dict, problem):
    """One [[items]] table as an Item, or None after saying what is wrong with it."""
    if not isinstance(raw, dict):
        problem(f"[[items]] number {index} is not a table")
        return None
    name = raw.get("id")
    if not isinstance(name, str) or not ITEM_ID.fullmatch(name):
        problem(f"[[items]] number {index}: id must be letters, digits, '-', '_' or '.', not {name!r}")
        return None
    label = f"[[items]] {name}"
    known = {"id", "title", "question", "points", "bonus", "notebook", "cell", "guide"}
    for key in sorted(set(raw) - known):
        problem(f"{label}: unknown key {key!r} ({', '.join(sorted(known))})")
    ok = True
    for key in ("title", "question"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            problem(f"{label}: {key} must be text")
            ok = False
    if not number(raw.get("points")) or raw["points"] <= 0:
        problem(f"{label}: points must be a positive number, not {raw.get('points')!r}")
        ok = False
    if not isinstance(raw.get("bonus", False), bool) or not isinstance(raw.get("guide", ""), str):
        problem(f"{label}: bonus must be true or false, guide text")
        ok = False
    notebook, cell = raw.get("notebook", ""), raw.get("cell", "")
    if notebook or cell:
        if not isinstance(notebook, str) or not isinstance(cell, str) or not notebook or not cell:
            problem(f"{label}: a notebook item needs both notebook (a path) and cell (its answer cell's grade_id)")
            ok = False
        elif cell not in answer_cells(repo / notebook):
            problem(f"{label}: {notebook} has no answer cell with grade_id {cell!r}"
                    + ("" if (repo / notebook).is_file() else " (no such notebook)"))
            ok = False
    elif name not in headings:
        problem(f"{label}: the README's 'Your writeup' has no section '### {name} …' (or give notebook and cell)")
        ok = False
    if not ok:
        return None
    return Item(name, raw["title"].strip(), raw["question"].strip(), raw["points"], raw.get("bonus", False),
                notebook, cell, raw.get("guide", ""))


def answer_cells(path: Path) -> dict[str, str]:
    """grade_id -> source of the nbgrader answer cells (`solution: true`) of a notebook file."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cells_of(notebook)


def cells_of(notebook) -> dict[str, str]:
    """grade_id -> source of the answer cells of a parsed notebook (anything else gives {})."""
    cells = notebook.get("cells", []) if isinstance(notebook, dict) else []
    found = {}
    for cell in cells if isinstance(cells, list) else []:
        meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
        grader = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
        if isinstance(grader, dict) and grader.get("solution") and isinstance(grader.get("grade_id"), str):
            source = cell.get("source", "")
            found[grader["grade_id"]] = "".join(source) if isinstance(source, list) else str(source)
    return found


# --- the README ------------------------------------------------------------------------------------------------


def writeup_headings(readme: str) -> dict[str, str]:
    """item id -> the full heading line of each `### <id> …` section under 'Your writeup'."""
    writeup = readme.split(WRITEUP, 1)[1] if WRITEUP in readme else ""
    return {match.group(1): match.group(0) for match in re.finditer(r"^### (\S+) .*$", writeup, flags=re.M)}


def readme_table(rubric: Rubric) -> str:
    """The block between the markers: how the grade is made, each item's points, the late policy."""
    def row(item):
        if item.notebook:
            return f"| {item.title} | {item.question} | `{item.notebook}`, its answer cell | {item.points:g} |"
        return f"| {item.id} {item.title} | {item.question} | this README, {item.id} | {item.points:g} |"

    def paragraph(text):
        return textwrap.fill(text, width=110, break_long_words=False, break_on_hyphens=False)

    counted = [item for item in rubric.items if not item.bonus]
    bonus = [item for item in rubric.items if item.bonus]
    late = rubric.late
    lines = [BEGIN, "",
             paragraph(f"The assignment is worth {points_text(rubric.total)}"
             + (f" and a bonus of {points_text(rubric.bonus)}" if bonus else "") + ": the graded tests' "
             f"[grade of record](#your-grade-of-record) counts for {points_text(rubric.autograded)} (its "
             f"10 points scaled), and the course staff grade the items below by hand, from what you commit."), "",
             "| item | question | where | points |", "| --- | --- | --- | ---: |",
             f"| the graded tests | Q1, Q2 | the regrade | {rubric.autograded:g} |",
             *map(row, counted),
             f"| **total** | | | **{rubric.total:g}** |", *map(row, bonus), ""]
    if late.penalty_per_day:
        lines += [paragraph(f"Late work: each day after the deadline (a started day counts whole; the first "
                  f"{late.grace_minutes:g} minutes are free) costs {points_text(late.penalty_per_day)}. "
                  f"The last commit you push at most {late.max_days} day{'s' if late.max_days != 1 else ''} "
                  "after the deadline is graded; a later one is not. The date that counts is the commit's, "
                  "checked against when the course staff's copy of your repository first saw it."), ""]
    return "\n".join(lines + [END])


def expected_readme(readme: str, rubric: Rubric) -> str:
    """The README with the rubric's table and headings (the rest unchanged); RubricError without the markers."""
    if BEGIN not in readme or END not in readme:
        raise RubricError(f"README.md: the markers {BEGIN!r} and {END!r} are missing from 'Your writeup'")
    before, rest = readme.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    updated = before + readme_table(rubric) + after
    for item in rubric.items:
        if not item.notebook:
            updated = re.sub(rf"^### {re.escape(item.id)} .*$", lambda _: f"### {item.heading}", updated,
                             count=1, flags=re.M)
    return updated


def readme_problems(readme: str, rubric: Rubric) -> list[str]:
    """Where the README's points differ from the rubric: one line each (empty when in step)."""
    try:
        expected = expected_readme(readme, rubric)
    except RubricError as error:
        return [str(error)]
    if expected == readme:
        return []
    problems = []
    have = writeup_headings(readme)
    for item in rubric.items:
        if not item.notebook and have.get(item.id) != f"### {item.heading}":
            problems.append(f"README.md: heading {have.get(item.id)!r} should be '### {item.heading}'")
    if readme.split(BEGIN, 1)[1].split(END, 1)[0] != readme_table(rubric)[len(BEGIN):-len(END)]:
        problems.append("README.md: the points table in 'Your writeup' differs from the rubric")
    return problems


def update_readme(rubric: Rubric, path: Path = REPO / "README.md") -> bool:
    """Rewrites the README's table and headings from the rubric; True if anything changed."""
    readme = path.read_text(encoding="utf-8")
    updated = expected_readme(readme, rubric)
    if updated != readme:
        path.write_text(updated, encoding="utf-8")
    return updated != readme


def summary(rubric: Rubric) -> str:
    """The rubric as the instructor checks it: one line per part."""
    lines = [f"{rubric.title}: {rubric.total:g} points + {rubric.bonus:g} bonus ({rubric.path})",
             f"  {'autograded':<22} {rubric.autograded:>5g}  the graded tests' points, scaled"]
    lines += [f"  {item.id:<22} {item.points:>5g}  {item.title} ({item.question})"
              for item in rubric.items]
    late = rubric.late
    lines.append(f"  late: {late.penalty_per_day:g} point(s) a day after {late.grace_minutes:g} minutes' grace, "
                 f"commits up to {late.max_days} day(s) late graded")
    return "\n".join(lines)
