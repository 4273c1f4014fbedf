"""`python -m grading collect COURSE --deadline WHEN`: every repository of the class roster, fetched into the
course folder, with the commit to grade and how late it is.

The course folder (COURSE) holds the instructor's `roster.csv` and everything the course commands write:

    COURSE/roster.csv             student,repository[,name,canvas_id,sis_user_id,sis_login_id,section,extension_days]
    COURSE/collected.json         the deadline, and per student every fetch: when, and the commit the branch was at
    COURSE/submissions/<s>.git    a bare copy of each repository; HEAD is the branch `submitted`: the commit to grade
    COURSE/grades/                python -m grading regrade COURSE/submissions/* --out COURSE/grades
    COURSE/scores/<s>.toml        the rubric items graded by hand (python -m grading scores)
    COURSE/similarity/            python -m grading similarity
    COURSE/final/                 the gradebook of record, feedback, the Canvas file (python -m grading gradebook)

The commit to grade is the last commit of the branch (`--ref`, default main) dated before the deadline plus the
student's extension, the rubric's grace and its `max_days` of late work. Its lateness starts from its commit
date, which the student's machine wrote; every fetch bounds it with evidence of our own: a commit that the
branch did not contain at a fetch arrived after that fetch started, and one it did contain arrived before that
fetch ended. Collect once at the deadline and once after the late window, and a back-dated commit is caught.
Nothing is checked out: the copies are bare, and git runs no hook of the student's on a fetch.
"""

import csv
import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grading.course.rubric import Late

STUDENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*")
COLUMNS = ("student", "repository", "name", "canvas_id", "sis_user_id", "sis_login_id", "section", "extension_days")
BRANCH = "refs/heads/submitted"
DAY = timedelta(days=1)
# No hooks, and no transport that runs a program of the URL's choosing (ext::, fd::), whatever the git config.
SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never", "-c", "protocol.fd.allow=never")


class RosterError(Exception):
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


# --- time --------------------------------------------------------------------------------------------------


def parse_when(text: str) -> datetime:
    """A deadline as the instructor writes it ('2026-10-01 23:59 +0200', ISO 8601); it must carry its offset."""
    cleaned = text.strip().replace("Z", "+00:00")
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)\s*([+-]\d\d):?(\d\d)", cleaned)
    if not match:
        raise RosterError(f"deadline {text!r}: write it as 'YYYY-MM-DD HH:MM +HHMM', with the offset from UTC")
    when = datetime.fromisoformat(f"{match[1]}T{match[2]}{match[3]}:{match[4]}")
    return when


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# --- git -------------------------------------------------------------------------------------------------------


def git(repo: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    # No prompt for a password (a missing repository must fail, not wait), and no hooks of anyone's.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    result = subprocess.run(["git", "-C", str(repo), *SAFE, *args], capture_output=True, text=True, env=env,
                            timeout=timeout)
    if check and result.returncode:
        last = (result.stderr.strip().splitlines() or ["?"])[-1]
        raise RosterError(f"git {args[0]} failed: {last}")
    return result


def commit_date(repo: Path, commit: str) -> datetime:
    return datetime.fromisoformat(git(repo, "show", "-s", "--format=%cI", commit).stdout.strip())


def contains(repo: Path, head: str, commit: str) -> bool:
    """Whether `commit` is `head` or one of its ancestors (False if either is no longer in the copy)."""
    return head == commit or git(repo, "merge-base", "--is-ancestor", commit, head, check=False).returncode == 0


def is_collected(repo: Path) -> bool:
    """Whether `repo` is a copy `collect` made: its HEAD is the branch of the commit to grade."""
    return git(repo, "symbolic-ref", "-q", "HEAD", check=False).stdout.strip() == BRANCH


# --- lateness -----------------------------------------------------------------------------------------------


@dataclass
class Lateness:
    dated: datetime  # the commit date: the student's machine's word
    counted: datetime  # the arrival time counted: the date, moved inside what the fetches prove
    days: int
    notes: list = field(default_factory=list)


def lateness(repo: Path, commit: str, deadline: datetime, late: Late, fetches: list[dict],
             extension_days: float = 0.0) -> Lateness:
    """How late `commit` is, from its date bounded by the fetches ({started, finished, head}) of `repo`."""
    dated = commit_date(repo, commit)
    after = [datetime.fromisoformat(fetch["started"]) for fetch in fetches
             if fetch.get("head") and not contains(repo, fetch["head"], commit)]
    before = [datetime.fromisoformat(fetch["finished"]) for fetch in fetches
              if fetch.get("head") and contains(repo, fetch["head"], commit)]
    counted, notes = dated, []
    if after and counted < max(after):
        counted = max(after)
        notes.append(f"dated {iso(dated)}, but the branch did not have it when fetched at {iso(counted)}: "
                     "counted as arriving then")
    if before and counted > min(before):
        counted = min(before)
        notes.append(f"dated {iso(dated)}, after a fetch at {iso(counted)} that already had it: counted as "
                     "arriving by then")
    due = deadline + timedelta(days=extension_days) + timedelta(minutes=late.grace_minutes)
    days = max(0, math.ceil((counted - due) / DAY))
    if days > late.max_days:
        notes.append(f"{days} days late: past the {late.max_days} days the rubric accepts")
    return Lateness(dated, counted, days, notes)


# --- collecting -----------------------------------------------------------------------------------------------


def cutoff(deadline: datetime, late: Late, extension_days: float = 0.0) -> datetime:
    """The end of the late window: commits dated after it are not graded."""
    return deadline + timedelta(days=extension_days + late.max_days, minutes=late.grace_minutes)


def read_collected(course: Path) -> dict:
    path = course / "collected.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RosterError(f"{path}: unreadable ({error}); move it away to collect afresh") from None


def write_json(path: Path, data):
    """Written whole or not at all: an interrupted command never leaves half a record."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(path)


def fetch(mirror: Path, student: Student, ref: str, clock) -> dict:
    """Fetches the student's branches into refs/remotes/origin/ of the bare copy; the fetch's record."""
    if not mirror.exists():
        subprocess.run(["git", "init", "-q", "--bare", str(mirror)], check=True, capture_output=True)
        git(mirror, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
    git(mirror, "config", "remote.origin.url", student.repository)
    started = clock()
    git(mirror, "fetch", "-q", "--prune", "--no-tags", "origin")
    finished = clock()
    head = git(mirror, "rev-parse", "--verify", "-q", f"refs/remotes/origin/{ref}^{{commit}}", check=False)
    return {"started": iso(started), "finished": iso(finished), "head": head.stdout.strip()}


def collect(course: Path, deadline: datetime, late: Late, ref: str = "main", log=print, clock=utc_now) -> list[str]:
    """Fetches every student of the roster and points each copy's HEAD at the commit to grade; returns the
    problems (one line each: a fetch that failed, a student with nothing to grade)."""
    students = read_roster(course)
    record = read_collected(course)
    if record.get("deadline") and record["deadline"] != iso(deadline):
        log(f"the deadline changed from {record['deadline']} to {iso(deadline)}")
    record.update(deadline=iso(deadline), ref=ref)
    record.setdefault("students", {})
    (course / "submissions").mkdir(parents=True, exist_ok=True)
    problems = []
    for student in students:
        mirror = course / "submissions" / f"{student.student}.git"
        entry = record["students"].setdefault(student.student, {"fetches": []})
        entry["repository"] = student.repository
        try:
            fetched = fetch(mirror, student, ref, clock)
        except (RosterError, subprocess.TimeoutExpired) as error:
            problems.append(f"{student.student}: not collected from {student.repository}: {error}")
            entry["problem"] = f"not collected: {error}"
            write_json(course / "collected.json", record)
            continue
        entry["fetches"].append(fetched)
        chosen = ""
        if fetched["head"]:
            chosen = git(mirror, "rev-list", "-1", f"--before={iso(cutoff(deadline, late, student.extension_days))}",
                         fetched["head"], "--").stdout.strip()
        if chosen:
            git(mirror, "update-ref", BRANCH, chosen)
            entry.update(submitted=chosen, problem="")
            found = lateness(mirror, chosen, deadline, late, entry["fetches"], student.extension_days)
            when = "on time" if not found.days else f"{found.days} day{'s' if found.days != 1 else ''} late"
            log(f"{student.student}: {chosen[:7]}, dated {iso(found.dated)}, {when}"
                + "".join(f"; {note}" for note in found.notes))
        else:
            git(mirror, "update-ref", "-d", BRANCH, check=False)
            reason = (f"no branch {ref}" if not fetched["head"] else
                      f"no commit on {ref} before {iso(cutoff(deadline, late, student.extension_days))}")
            entry.update(submitted="", problem=reason)
            problems.append(f"{student.student}: {reason}")
        git(mirror, "symbolic-ref", "HEAD", BRANCH)
        write_json(course / "collected.json", record)
    return problems
