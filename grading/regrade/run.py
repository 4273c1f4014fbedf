"""`python -m grading regrade SUBMISSION... --out DIR`: the grade of record, from the instructor's own run.

Student code computes; a process that never imports it judges.

- The judge (this process) collects the instructor's graded tests, public and hidden (grading/regrade/judge.py),
  and runs each once with a case that records its calls of the student's code and computes the expected
  values from the oracles.
- For each submission, its commit is read straight from git and checked (grading/regrade/submissions.py: plain
  paths, no links, size caps) before anything is written. Only its two model files are used to compute:
  they go, with the template's other model files and the probe, into a folder the sandbox sees read-only
  (grading/regrade/sandbox.py: bubblewrap, seccomp, limits, a wall clock measured here).
- The public tests' calls run in one sandbox and the hidden tests' in another, so code that sees a hidden
  input can never put it into a public test's output. The sandbox sends back tensors; the judge compares
  them and writes every message itself.
- Before the class, the reference solution goes through the same path and must earn every point: a
  regrade whose sandbox or tests are broken refuses instead of grading anyone.

DIR receives gradebook.csv, feedback/<student>.md, results/<student>.json (everything, for the review site)
and logs/<student>.log (the sandbox's output, capped; for the instructor only). A rerun skips a submission
whose commit, instructor tests, probe, template and limits are unchanged (the key is stored in its results
file, which student code never reaches).
"""

import hashlib
import json
import queue
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from grading.course import collect
from grading.course.rubric import Late
from grading.errors import GradingError
from grading.git import git
from grading.publish.release import check_release, shipped_files, template_of
from grading.regrade import judge, results, sandbox, shards, submissions
from grading.regrade.flags import review_flags
from grading.regrade.submissions import MODEL_FILES, Submission, SubmissionError, blob_id

# What a deadline adds to a result (see Regrade.run).
LATENESS = ("deadline", "days_late", "late_notes", "late_penalty")


class RegradeError(GradingError):
    """The regrade cannot start: said in one line per problem."""


# --- the instructor's tree -----------------------------------------------------------------------------------


def instructor_base(repo: Path) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of the clean tree: the student template plus the hidden tests."""
    base = template_of(shipped_files(repo))
    listed = git(repo, "ls-files", "-z", "tests/hidden")
    for path in filter(None, listed.split("\0")):
        if (repo / path).is_file():
            base[path] = ((repo / path).read_bytes(), 0o644)
    if not any(path.startswith("tests/hidden/") for path in base):
        raise RegradeError(f"{repo}/tests/hidden holds no committed test file (git add them)")
    return base


def release_blobs(repo: Path, base: dict, release: Path = None) -> dict[str, str]:
    """path -> blob id of every file students received: the `main` branch of the release repository
    when given, else the template the instructor's tree makes now."""
    if release is None:
        return {path: blob_id(content) for path, (content, _) in base.items() if not path.startswith("tests/hidden/")}
    listing = git(release, "ls-tree", "-r", "-z", "--full-tree", "main")
    blobs = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        blobs[path] = meta.split()[2]
    return blobs


def digest(*parts) -> str:
    value = hashlib.sha256()
    for part in parts:
        value.update(part if isinstance(part, bytes) else str(part).encode())
        value.update(b"\0")
    return value.hexdigest()


# --- the class -----------------------------------------------------------------------------------------------


class Regrade:
    """One regrade: the judge's checks, the sandbox, the limits; `grade` per submission."""

    def __init__(self, repo: Path, out: Path, limits: sandbox.Limits, release: Path = None, log=print,
                 seed: int = None):
        self.repo, self.out, self.limits, self.log = repo.resolve(), out.resolve(), limits, log
        try:
            self.isolation = sandbox.check_available()
            self.program = sandbox.seccomp_program()
        except sandbox.SandboxUnavailable as error:
            raise RegradeError(str(error)) from None
        # Every input and parameter is drawn afresh for each regrade: none can be foreseen from the tests' code.
        self.secret = secrets.randbits(62) if seed is None else seed
        self.base = instructor_base(self.repo)
        self.release = release_blobs(self.repo, self.base, release)
        self.release_key = digest(*sorted(self.release.items()))
        try:
            self.checks = judge.graded_checks(self.repo)
            self.plans = queue.SimpleQueue()  # a plan holds one submission's outcomes at a time: one per worker
            self.plans.put([judge.plan(check, self.secret) for check in self.checks])
        except judge.CheckError as error:
            raise RegradeError(str(error)) from None
        if not self.checks:
            raise RegradeError(f"{self.repo}/tests holds no graded test")
        self.models = {path: content for path, (content, _) in self.base.items()
                       if path.startswith("models/") and path.endswith(".py")}
        tests = sorted((self.repo / "tests").glob("graded/*.py")) + sorted((self.repo / "tests").glob("hidden/*.py"))
        self.key_parts = [digest(*(path.read_bytes() for path in tests)),
                          digest(*(content for _, content in sorted(self.models.items()))),
                          digest(*(path.read_bytes() for path in sorted((self.repo / "autograde").glob("*.py"))),
                                 Path(sandbox.__file__).read_bytes(), Path(judge.__file__).read_bytes()),
                          json.dumps(asdict(limits))]
        self.work = Path(tempfile.mkdtemp(prefix="regrade-"))
        self.work.chmod(0o755)

    def close(self):
        """Removes the scratch folders (the results are in `out` already)."""
        shutil.rmtree(self.work, ignore_errors=True)

    def key(self, submission: Submission) -> str:
        return digest(submission.commit, *self.key_parts)

    def compute(self, name: str, files: dict[str, bytes]) -> tuple[dict, list[str], bytes]:
        """Runs every graded test on these model files: (verdicts by test name, notes, the sandbox's log)."""
        folder = self.work / f"{name}-{threading.get_ident()}"
        sandbox.write_probe_folder(folder, {**self.models, **{path: files[path] for path in MODEL_FILES
                                                              if path in files}})
        sources = {Path(path).stem: files.get(path, self.models.get(path, b"")).decode("utf-8", errors="replace")
                   for path in MODEL_FILES}
        try:
            cases = self.plans.get_nowait()
        except queue.Empty:
            cases = [judge.plan(check, self.secret) for check in self.checks]
        notes, logs = [], []

        def run(hidden: bool):
            calls = [result for case in cases if case.hidden == hidden for result in case.results
                     if result.call is not None]
            deadline = time.monotonic() + self.limits.run_seconds
            outcomes, run_notes, log = judge.run_calls([result.call for result in calls], folder, self.limits,
                                                        self.program, deadline)
            for result, outcome in zip(calls, outcomes):
                result.outcome = outcome
            return [f"{'hidden' if hidden else 'public'} tests: {note}" for note in run_notes], log

        try:
            # Two sandboxes, side by side: a hidden input never meets a public test's output.
            with ThreadPoolExecutor(max_workers=2) as pool:
                for run_notes, log in pool.map(run, (False, True)):
                    notes += run_notes
                    logs.append(log)
            verdicts = {check.name: judge.judge(check, case, sources) for check, case in zip(self.checks, cases)}
        finally:
            for case in cases:
                for result in case.results:
                    result.outcome = None
            self.plans.put(cases)
            shutil.rmtree(folder, ignore_errors=True)
        return verdicts, notes, b"\n".join(logs)

    def grade(self, submission: Submission) -> dict:
        """The submission's results (see results.summarise), from the cache when nothing changed."""
        tests = judge.describe(self.checks)
        flags = submissions.tamper_flags(submission.tree, self.release) if submission.commit else []
        if submission.problem:
            return results.summarise(submission, tests, {}, flags, [], submission.notes, 0.0, key="",
                                       problem=submission.problem)
        key = self.key(submission)
        previous = self.out / "results" / f"{submission.name}.json"
        if previous.exists():
            try:
                cached = results.read(previous, submission.name)
            except results.ResultsError:
                cached = {}  # graded again
            if cached.get("key") == key:  # the flags are recomputed: --release may differ from last time
                return {**cached, "tamper": flags, "cached": True}
        started = time.monotonic()
        verdicts, notes, log = self.compute(submission.name, submission.files)
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        (self.out / "logs" / f"{submission.name}.log").write_bytes(log)
        return results.summarise(submission, tests, verdicts, flags, review_flags(submission.files),
                                   submission.notes + notes, time.monotonic() - started, key=key)

    def check_reference(self):
        """The reference solution must earn every point through the sandbox, or nobody is graded."""
        started = time.monotonic()
        files = {path: (self.repo / path).read_bytes() for path in MODEL_FILES}
        verdicts, notes, log = self.compute("reference", files)
        lost = {name: verdict for name, verdict in verdicts.items() if verdict.outcome != "passed"}
        if lost:
            first = next(iter(lost.values())).message.strip().splitlines()[:3]
            raise RegradeError(f"the reference solution loses {len(lost)} graded test(s) in the sandbox "
                               f"({', '.join(sorted(lost))}): {' / '.join(first)}" + (f"; {notes[0]}" if notes else ""))
        self.log(f"the reference solution earns every point in the sandbox ({time.monotonic() - started:.1f} s)")

    def run(self, paths: list[Path], ref: str, deadline: datetime, late: Late, jobs: int,
            shard: tuple[int, int] = None) -> list[dict]:
        """Grades each submission at `ref`, or with a deadline at the commit the course's deadline rule chooses
        (grading.course.roster: the last one dated inside the late window), with its days late. A shard
        (I, N) also writes shard.json, for `merge` (grading/regrade/shards.py)."""
        self.log(f"regrading {len(paths)} submission{'s' if len(paths) != 1 else ''}, {jobs} at a time, "
                 f"{len(self.checks)} graded tests; {self.isolation}")
        self.check_reference()
        graded = {}
        tests = judge.describe(self.checks)
        window_end = collect.iso(collect.cutoff(deadline, late)) if deadline else ""

        def grade_one(path: Path) -> dict:
            submission = submissions.read(path, ref, window_end)
            try:
                result = self.grade(submission)
            except Exception as error:  # a bug of the grader's must not stop the class: the row says it
                return results.summarise(submission, tests, {}, [], [], [], 0.0, key="",
                                           problem=f"the grader failed ({type(error).__name__}: {error})")
            for key in LATENESS:  # a cached result keeps what the last run's deadline gave
                result.pop(key, None)
            if deadline and submission.commit:
                found = collect.lateness(path, submission.commit, deadline, late, [])
                result.update(deadline=collect.iso(deadline), days_late=found.days, late_notes=found.notes,
                              late_penalty=found.days * late.penalty_per_day)
            return result

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(grade_one, path): path for path in paths}
            for done, future in enumerate(as_completed(futures), start=1):
                result = future.result()
                graded[result["name"]] = result
                results.write_student(self.out, result)  # written at once: an interrupted class loses nothing
                self.log(f"[{done}/{len(paths)}] {results.progress_line(result)}")
        ordered = [graded[name] for name in sorted(graded)]
        results.write_gradebook(self.out / "gradebook.csv", ordered, tests)
        if shard:
            shards.write_manifest(self.out, shard, list(graded), self.secret,
                                  digest(*self.key_parts, ref, deadline and collect.iso(deadline), self.release_key),
                                  tests)
        self.log(f"wrote {self.out / 'gradebook.csv'} and {len(ordered)} feedback files in {self.out / 'feedback'}")
        self.log(f"the judge's memory peaked at {peak_memory_mb():.0f} MB")
        return ordered


def peak_memory_mb() -> float:
    """This process's largest resident size so far: the judge's, never a sandbox's."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def regrade(repo: Path, paths: list[str], out: Path, ref: str = "HEAD", deadline: str = "", release: Path = None,
            jobs: int = 2, limits: sandbox.Limits = sandbox.Limits(), log=print, seed: int = None,
            late: Late = Late(), shard: tuple[int, int] = None) -> list[dict]:
    """Grades every submission; returns their results (also written to `out`). With a deadline, `late` (the
    rubric's late policy) sets the late window and the days late, as `collect` does; a copy `collect` made
    already points at its commit to grade, and is refused with a deadline (one rule, applied once). With a
    shard (I, N), only that shard's share of the class, with the secret all shards share (`seed`)."""
    if shard and seed is None:
        raise RegradeError(f"--shard {shard[0]}/{shard[1]} needs --seed: every shard must draw the tests' inputs "
                           "with the same secret")
    try:
        found = submissions.check_paths(paths)
        when = collect.parse_when(deadline) if deadline else None
    except (SubmissionError, collect.CollectError) as error:
        raise RegradeError(str(error)) from None
    if shard:
        found = shards.select(found, shard)
    collected = [path for path in found if when and collect.is_collected(path)]
    if collected:
        raise RegradeError("\n".join(f"{path}: collect chose its commit to grade, and counts its days late, at "
                                     "its deadline: regrade it without --deadline" for path in collected))
    if release is not None:
        check_release(release)
    grader = Regrade(repo, out, limits, release, log, seed)  # refuses a machine without the sandbox first
    out.mkdir(parents=True, exist_ok=True)
    try:
        return grader.run(found, ref, when, late, jobs, shard)
    finally:
        grader.close()
