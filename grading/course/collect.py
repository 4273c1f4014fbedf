"""`python -m grading collect COURSE --deadline WHEN`: every repository of the class roster, fetched into the
course folder, with the commit to grade and how late it is.

    COURSE/collected.json         the deadline, and per student every fetch: when, and the commit the branch was at
    COURSE/submissions/<s>.git    a bare copy of each repository; HEAD is the branch `submitted`: the commit to grade

The commit to grade is the last commit of the branch (`--ref`, default main) dated before the deadline plus the
student's extension, the rubric's grace and its `max_days` of late work. Its lateness starts from its commit
date, which the student's machine wrote; every fetch bounds it with evidence of our own: a commit that the
branch did not contain at a fetch arrived after that fetch started, and one it did contain arrived before that
fetch ended. Collect once at the deadline and once after the late window, and a back-dated commit is caught.
Nothing is checked out: the copies are bare, and git runs no hook of the student's (grading/git.py).
"""

import json
import math
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from grading.course.roster import Student, read_roster
from grading.course.rubric import Late
from grading.errors import GradingError
from grading.git import GitError, git, succeeds, upload_pack

BRANCH = "refs/heads/submitted"
DAY = timedelta(days=1)


class CollectError(GradingError):
    """A deadline or a record of the collection that cannot be used: said in one line."""


# --- time --------------------------------------------------------------------------------------------------


def parse_when(text: str) -> datetime:
    """A deadline as the instructor writes it ('2026-10-01 23:59 +0200', ISO 8601); it must carry its offset."""
    cleaned = text.strip().replace("Z", "+00:00")
    match = re.fullmatch(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)\s*([+-]\d\d):?(\d\d)", cleaned)
    if not match:
        raise CollectError(f"deadline {text!r}: write it as 'YYYY-MM-DD HH:MM +HHMM', with the offset from UTC")
    when = datetime.fromisoformat(f"{match[1]}T{match[2]}{match[3]}:{match[4]}")
    return when


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# --- git -------------------------------------------------------------------------------------------------------


def commit_date(repo: Path, commit: str) -> datetime:
    return datetime.fromisoformat(git(repo, "show", "-s", "--format=%cI", commit).strip())


def contains(repo: Path, head: str, commit: str) -> bool:
    """Whether `commit` is `head` or one of its ancestors (False if either is no longer in the copy)."""
    return head == commit or succeeds(repo, "merge-base", "--is-ancestor", commit, head)


def is_collected(repo: Path) -> bool:
    """Whether `repo` is a copy `collect` made: its HEAD is the branch of the commit to grade."""
    return git(repo, "symbolic-ref", "-q", "HEAD", check=False).strip() == BRANCH


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
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CollectError(f"{path}: unreadable ({error}); move it away to collect afresh") from None
    if not isinstance(record, dict) or not isinstance(record.get("students", {}), dict):
        raise CollectError(f"{path}: not the record collect writes; move it away to collect afresh")
    return record


def write_json(path: Path, data):
    """Written whole or not at all: an interrupted command never leaves half a record."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(path)


def fetch(mirror: Path, student: Student, ref: str, clock) -> dict:
    """Fetches the student's branches into refs/remotes/origin/ of the bare copy; the fetch's record."""
    if not mirror.exists():
        git(None, "init", "-q", "--bare", str(mirror))
        git(mirror, "config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
    git(mirror, "config", "remote.origin.url", student.repository)
    started = clock()
    git(mirror, "fetch", "-q", "--prune", "--no-tags", *upload_pack(student.repository), "origin")
    finished = clock()
    head = git(mirror, "rev-parse", "--verify", "-q", f"refs/remotes/origin/{ref}^{{commit}}", check=False)
    return {"started": iso(started), "finished": iso(finished), "head": head.strip()}


def collect(course: Path, deadline: datetime, late: Late, ref: str = "main", release: Path = None, log=print,
            clock=utc_now) -> list[str]:
    """Fetches every student of the roster and points each copy's HEAD at the commit to grade; returns the
    problems (one line each: a fetch that failed, a student with nothing to grade). `release`, the repository
    `python -m grading release` wrote, is remembered for the regrade (`regrade_command`)."""
    students = read_roster(course)
    record = read_collected(course)
    if record.get("deadline") and record["deadline"] != iso(deadline):
        log(f"the deadline changed from {record['deadline']} to {iso(deadline)}")
    record.update(deadline=iso(deadline), ref=ref)
    if release is not None:
        record["release"] = str(Path(release).resolve())
    record.setdefault("students", {})
    (course / "submissions").mkdir(parents=True, exist_ok=True)
    problems = []
    for student in students:
        mirror = course / "submissions" / f"{student.student}.git"
        entry = record["students"].setdefault(student.student, {"fetches": []})
        entry["repository"] = student.repository
        try:
            fetched = fetch(mirror, student, ref, clock)
        except GitError as error:
            problems.append(f"{student.student}: not collected from {student.repository}: {error}")
            entry["problem"] = f"not collected: {error}"
            write_json(course / "collected.json", record)
            continue
        entry["fetches"].append(fetched)
        chosen = ""
        if fetched["head"]:
            chosen = git(mirror, "rev-list", "-1", f"--before={iso(cutoff(deadline, late, student.extension_days))}",
                         fetched["head"], "--").strip()
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


def regrade_command(course: Path, release: str = None) -> str:
    """The command that regrades what `collect` fetched, with the release students received (`release`, or
    the one an earlier collect remembered): the line to run next."""
    release = release or read_collected(course).get("release")
    command = (f"python -m grading regrade {shlex.quote(str(course / 'submissions'))}/* "
               f"--out {shlex.quote(str(course / 'grades'))} --release ")
    if release:
        return command + shlex.quote(str(release))
    return command + ("RELEASE (the repository python -m grading release wrote; collect --release RELEASE "
                      "puts it here)")
