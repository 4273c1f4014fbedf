"""`python -m grading regrade SUBMISSION... --out DIR`: the grade of record, from the instructor's own run.

For each submission: the files students write (grading/submissions.py) are copied into a clean copy of
the release — the student template, the instructor's public tests and the hidden tests (tests/hidden)
— and the public and hidden graded tests run there in a sandboxed process (grading/sandbox.py), several
submissions at a time. When the process dies (os._exit, a signal, a hang the watchdog kills), the test
that was running gets zero with the reason, and the run resumes after it. Nothing from the student's
repository but their own files is used: not its tests, not its workflow, not its configuration.

DIR receives gradebook.csv, feedback/<student>.md, results/<student>.json (everything, for the review
site) and logs/<student>.log (the captured output, capped). A rerun skips a submission whose commit,
instructor tree and limits are unchanged (the key is stored in its results file).

Points: the public tests are worth 10 and the hidden tests 2 (their `points` markers);
grade = (public + hidden) × 10 / 12, so the hidden tests hold a sixth of the grade of record.
"""

import hashlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from grading import gradebook, sandbox, submissions
from grading.gradebook import WORST_FIRST
from grading.release import shipped_files
from grading.submissions import Submission, SubmissionError, blob_id
from grading.template import make_template

TEST_FOLDERS = ("tests/graded", "tests/hidden")


class RegradeError(Exception):
    """The regrade cannot start: said in one line per problem."""


# --- the instructor's tree -----------------------------------------------------------------------------------


def instructor_base(repo: Path) -> dict[str, tuple[bytes, int]]:
    """path -> (content, mode) of the clean tree: the student template plus the hidden tests."""
    shipped = shipped_files(repo)
    template = make_template({path: content for path, (content, _) in shipped.items()})
    base = {path: (template[path], mode) for path, (_, mode) in shipped.items()}
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "tests/hidden"], capture_output=True,
                            text=True, check=True).stdout
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
    listing = submissions.git(release, "ls-tree", "-r", "-z", "--full-tree", "main")
    blobs = {}
    for entry in filter(None, listing.split("\0")):
        meta, _, path = entry.partition("\t")
        blobs[path] = meta.split()[2]
    return blobs


def write_tree(root: Path, files: dict[str, tuple[bytes, int]]):
    for path, (content, mode) in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def tree_digest(files: dict[str, tuple[bytes, int]]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{blob_id(files[path][0])}\0".encode())
    return digest.hexdigest()


# --- one run of pytest, resumed after crashes -----------------------------------------------------------------


def read_events(path: Path) -> list[dict]:
    """The runner's events; a last line cut short by a dying process is dropped."""
    events = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return events


def why_it_died(ended: sandbox.Ended, limits: sandbox.Limits) -> tuple[str, str]:
    """(outcome, cause) when the test process ended without finishing its session."""
    if ended.killed:
        return "timeout", f"the grader stopped it: {ended.killed} (an endless loop or a hang?)"
    if ended.returncode < 0:
        number = -ended.returncode
        if number == signal.SIGXFSZ:
            return "crashed", f"the grader stopped it: it wrote more than {limits.output_mb} MB (a flood of output?)"
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return "crashed", f"the test process was killed by {name}"
    return "crashed", (f"the test process ended with exit status {ended.returncode} (os._exit, or something "
                       f"else that ends the interpreter)")


def append_capped(source: Path, target: Path, keep: int = 32 << 10):
    """Appends `source` to `target`, only its first and last `keep` bytes when it is longer than both."""
    with open(source, "rb") as part, open(target, "ab") as combined:
        size = part.seek(0, 2)
        part.seek(0)
        if size <= 2 * keep:
            combined.write(part.read())
            return
        combined.write(part.read(keep))
        combined.write(f"\n[... {size - 2 * keep} bytes of output left out ...]\n".encode())
        part.seek(size - keep)
        combined.write(part.read())


def output_tail(path: Path, lines: int = 12) -> str:
    with open(path, "rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - 4000))
        return "\n".join(file.read().decode(errors="replace").splitlines()[-lines:])


def run_resumed(tree: Path, folder: Path, harness: Path, nodeids: list[str], limits: sandbox.Limits,
                hidden: list[Path], expected: dict) -> tuple[dict, list[str]]:
    """nodeid -> {outcome, message} for every test, and notes (blocked actions, files changed)."""
    outcomes, notes, remaining, attempt = {}, [], list(nodeids), 0
    log = folder / "output.log"
    while remaining and attempt <= len(nodeids):
        attempt += 1
        events_path, output = folder / f"events-{attempt}.jsonl", folder / f"output-{attempt}.log"
        ended = sandbox.run_tests(tree, folder, harness, ["-p", "no:cacheprovider", "-q", "-o", "addopts=",
                                                          "--continue-on-collection-errors", *remaining],
                                  limits, hidden, events_path, output, folder / "blocked.jsonl")
        append_capped(output, log)
        # Messages name files by their path in the repository, not in the scratch folder.
        events = json.loads(json.dumps(read_events(events_path)).replace(f"{tree}/", ""))
        collect_errors = {event["nodeid"]: event["message"] for event in events if event["event"] == "collect_error"}
        started = [event["nodeid"] for event in events if event["event"] == "start"]
        for event in events:
            if event["event"] == "result":
                previous = outcomes.get(event["nodeid"])
                if previous is None or WORST_FIRST.index(event["outcome"]) < WORST_FIRST.index(previous["outcome"]):
                    outcomes[event["nodeid"]] = {"outcome": event["outcome"], "message": event["message"]}
        notes += changed_files(tree, expected)
        running = [nodeid for nodeid in started if nodeid not in outcomes]
        finished = any(event["event"] == "finished" for event in events)
        if not finished and running:  # the test that was running takes the blame; resume after it
            outcome, cause = why_it_died(ended, limits)
            outcomes[running[-1]] = {"outcome": outcome, "message": f"this test was running when {cause}"}
        elif not finished and not any(event["event"] == "result" for event in events):
            cause = why_it_died(ended, limits)[1]  # before any test: importing the student's code, most likely
            for nodeid in remaining:
                outcomes[nodeid] = {"outcome": "crashed", "message": f"the tests never started: {cause}\n"
                                                                      f"{output_tail(output)}"}
        elif finished:
            for nodeid in remaining:
                if nodeid not in outcomes:
                    error = next((message for path, message in collect_errors.items() if nodeid.startswith(path)), "")
                    outcomes[nodeid] = ({"outcome": "crashed", "message": f"could not import the tests: {error}"}
                                        if error else {"outcome": "not run", "message": "pytest did not run it"})
        remaining = [nodeid for nodeid in remaining if nodeid not in outcomes]
    return outcomes, notes


def changed_files(tree: Path, expected: dict[str, tuple[bytes, int]]) -> list[str]:
    """Files of the tree that a run changed, deleted or added (the guard should have stopped it); the
    tree is put back as it was, so that a resumed run uses the instructor's files again."""
    notes = []
    present = {str(path.relative_to(tree)) for path in tree.rglob("*") if path.is_file() or path.is_symlink()}
    for path in sorted(present - set(expected)):
        notes.append(f"added {path} while running")
        (tree / path).unlink()
    for path, (content, mode) in expected.items():
        target = tree / path
        if target.is_symlink() or not target.is_file() or target.read_bytes() != content:
            notes.append(f"{'changed' if target.exists() else 'deleted'} {path} while running")
            if target.is_symlink() or target.is_dir():
                target.unlink() if target.is_symlink() else shutil.rmtree(target)
            write_tree(tree, {path: (content, mode)})
    return notes


# --- the class -----------------------------------------------------------------------------------------------


class Regrade:
    """One regrade: the instructor's tree, the list of graded tests, the limits; `grade` per submission."""

    def __init__(self, repo: Path, out: Path, limits: sandbox.Limits, release: Path = None, log=print):
        self.repo, self.out, self.limits, self.log = repo.resolve(), out.resolve(), limits, log
        self.base = instructor_base(self.repo)
        self.release = release_blobs(self.repo, self.base, release)
        self.work = Path(tempfile.mkdtemp(prefix="regrade-"))
        self.harness = sandbox.write_harness(self.work / "harness")
        harness_digest = hashlib.sha256(b"".join((self.harness / name).read_bytes() for name in sandbox.HARNESS_FILES))
        self.key_parts = [tree_digest(self.base), harness_digest.hexdigest(), json.dumps(asdict(limits))]
        self.hidden_paths = [self.repo, self.out, self.work]
        self.submission_paths = []
        try:
            self.tests = self.collect()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Removes the scratch folders (the results are in `out` already)."""
        shutil.rmtree(self.work, ignore_errors=True)

    def collect(self) -> list[dict]:
        """The graded tests (public and hidden) with their points, collected on the clean template."""
        folder = self.work / "collect"
        write_tree(folder / "tree", self.base)
        events_path = folder / "events.jsonl"
        ended = sandbox.run_tests(folder / "tree", folder, self.harness, ["-p", "no:cacheprovider", "-q",
                                  "-o", "addopts=", "--collect-only", *TEST_FOLDERS], self.limits,
                                  self.hidden_paths, events_path, folder / "output.log", folder / "blocked.jsonl")
        tests = [event for event in read_events(events_path) if event["event"] == "collected"]
        if ended.returncode or not tests:
            raise RegradeError(f"the graded tests do not collect on the template:\n{output_tail(folder / 'output.log')}")
        return tests

    def key(self, submission: Submission) -> str:
        return hashlib.sha256("\0".join([submission.commit, *self.key_parts]).encode()).hexdigest()

    def grade(self, submission: Submission) -> dict:
        """The submission's results (see gradebook.summarise), from the cache when nothing changed."""
        previous = self.out / "results" / f"{submission.name}.json"
        flags = submissions.tamper_flags(submission.tree, self.release) if submission.commit else []
        if submission.problem:
            return gradebook.summarise(submission, self.tests, {}, [], flags, [], 0.0, key="", problem=submission.problem)
        key = self.key(submission)
        if previous.exists():
            cached = json.loads(previous.read_text())
            if cached.get("key") == key:  # the flags are recomputed: --release may differ from last time
                return {**cached, "tamper": flags, "cached": True}
        started = time.monotonic()
        folder = self.work / submission.name
        # The template with the student's files on top: a model file they deleted stays the stub.
        tree_files = {**self.base, **{path: (content, 0o644) for path, content in submission.files.items()}}
        write_tree(folder / "tree", tree_files)
        hidden = [*self.hidden_paths, *(path for path in self.submission_paths if path != submission.path.resolve())]
        outcomes, notes = run_resumed(folder / "tree", folder, self.harness, [test["nodeid"] for test in self.tests],
                                      self.limits, hidden, tree_files)
        blocked = [json.loads(line)["blocked"] for line in (folder / "blocked.jsonl").read_text().splitlines()
                   if line.strip()] if (folder / "blocked.jsonl").exists() else []
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "output.log", self.out / "logs" / f"{submission.name}.log")
        shutil.rmtree(folder, ignore_errors=True)
        return gradebook.summarise(submission, self.tests, outcomes, notes, flags, blocked,
                                   time.monotonic() - started, key=key)

    def run(self, paths: list[Path], ref: str, deadline: str, jobs: int) -> list[dict]:
        self.submission_paths = [path.resolve() for path in paths]
        self.log(f"regrading {len(paths)} submission{'s' if len(paths) != 1 else ''}, {jobs} at a time, "
                 f"{len(self.tests)} graded tests; {sandbox.isolation_summary()}")
        results = {}

        def grade_one(path: Path) -> dict:
            submission = submissions.read(path, ref, deadline)
            try:
                return self.grade(submission)
            except Exception as error:  # a bug of the grader's must not stop the class: the row says it
                return gradebook.summarise(submission, self.tests, {}, [], [], [], 0.0, key="",
                                           problem=f"the grader failed ({type(error).__name__}: {error})")

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(grade_one, path): path for path in paths}
            for done, future in enumerate(as_completed(futures), start=1):
                result = future.result()
                results[result["name"]] = result
                gradebook.write_student(self.out, result)  # written at once: an interrupted class loses nothing
                self.log(f"[{done}/{len(paths)}] {gradebook.progress_line(result)}")
        ordered = [results[name] for name in sorted(results)]
        gradebook.write_gradebook(self.out / "gradebook.csv", ordered, self.tests)
        self.log(f"wrote {self.out / 'gradebook.csv'} and {len(ordered)} feedback files in {self.out / 'feedback'}")
        return ordered


def regrade(repo: Path, paths: list[str], out: Path, ref: str = "HEAD", deadline: str = "", release: Path = None,
            jobs: int = 2, limits: sandbox.Limits = sandbox.Limits(), log=print) -> list[dict]:
    """Grades every submission; returns their results (also written to `out`)."""
    try:
        found = submissions.check_paths(paths)
    except SubmissionError as error:
        raise RegradeError(str(error)) from None
    if release is not None and subprocess.run(["git", "-C", str(release), "rev-parse", "--verify", "-q", "main"],
                                              capture_output=True).returncode:
        raise RegradeError(f"--release {release}: not a release repository with a branch main")
    out.mkdir(parents=True, exist_ok=True)
    grader = Regrade(repo, out, limits, release, log)
    try:
        return grader.run(found, ref, deadline, jobs)
    finally:
        grader.close()
