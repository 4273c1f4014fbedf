"""Student repositories as the regrade sees them: which commit, the files students write, what they changed
that they should not have.

A submission is a git repository (a clone or a bare repository) named after its folder (`alice.git` ->
alice). It is read at one commit only (`--ref`, or the last commit before `--deadline`), straight from
git's objects: the working tree, uncommitted changes and ignored files play no part. (A commit's date
is written by the student's machine; only the host's push log can prove when it arrived.)

Students write `STUDENT_FILES` and the folders in `STUDENT_FOLDERS`; they may add new configurations
in `exps/`. Every other path is protected: a protected file changed, deleted or added is a tamper flag.
"""

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from grading.errors import GradingError
from grading.git import GitError, git, succeeds

STUDENT_FILES = ("models/transformer.py", "models/mamba.py", "README.md")
MODEL_FILES = ("models/transformer.py", "models/mamba.py")
STUDENT_FOLDERS = ("notebooks/", "assets/")
MAY_ADD = ("exps/",)
REGULAR_FILE_MODES = ("100644", "100755")
# What a submission may hold. Past these it is refused (or, for one large writeup file, that file skipped):
# git trees come from the student and are read before any sandbox starts.
MAX_ENTRIES = 5000  # files in the whole commit
MAX_MODEL_BYTES = 1 << 20  # each of models/transformer.py and models/mamba.py
MAX_FILE_BYTES = 25 << 20  # each README, notebook or asset
MAX_STUDENT_BYTES = 100 << 20  # all of the student's files together


class SubmissionError(GradingError):
    """A submission that cannot be read at all: said in one line."""


def is_student_file(path: str) -> bool:
    return path in STUDENT_FILES or path.startswith(STUDENT_FOLDERS)


def blob_id(content: bytes) -> str:
    """git's object id of a file with this content (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Submission:
    name: str
    path: Path
    commit: str = ""  # empty when no commit qualifies
    problem: str = ""  # why it cannot be graded, in one line (shown to the student: never their own text)
    files: dict = field(default_factory=dict)  # student path -> content, at the commit
    tree: dict = field(default_factory=dict)  # every path -> (mode, blob id), at the commit
    notes: list = field(default_factory=list)  # for the instructor: what was refused or skipped, and why


def path_problem(raw: bytes):
    """Why a tree entry's name is not a plain relative path (None if it is). A crafted tree can hold '..',
    absolute or empty components, backslashes or control characters: none of that is ever written."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "a name that is not UTF-8"
    if len(raw) > 1024 or any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        return "a name with control characters, a backslash, or over 1,024 bytes"
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or any(len(p) > 255 for p in parts):
        return "a name with an absolute, empty, '.' or '..' component"
    return None


def submission_name(path: Path) -> str:
    name = path.resolve().name
    return name[: -len(".git")] if name.endswith(".git") and len(name) > 4 else name


def check_paths(paths: list[str]) -> list[Path]:
    """The submissions as paths, refused (one line each) unless each is a git repository with its own name."""
    problems, found, names = [], [], {}
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            problems.append(f"{text}: no such directory")
        elif not succeeds(path, "rev-parse", "--git-dir"):
            problems.append(f"{text}: not a git repository (a clone or a bare repository)")
        elif submission_name(path) in names:
            problems.append(f"{text}: the same name as {names[submission_name(path)]} ({submission_name(path)})")
        else:
            names[submission_name(path)] = text
            found.append(path)
    if problems:
        raise SubmissionError("\n".join(problems))
    return found


def read(path: Path, ref: str = "HEAD", deadline: str = "") -> Submission:
    """The submission at `ref`, or at the last commit of `ref` dated before `deadline` (the end of the late
    window, which grading.course.collect.cutoff sets)."""
    submission = Submission(submission_name(path), path)
    try:
        if deadline:
            submission.commit = git(path, "rev-list", "-1", f"--before={deadline}", ref, "--").strip()
            if not submission.commit:
                submission.problem = f"no commit dated before {deadline}"
                return submission
        else:
            submission.commit = git(path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
        listing = git(path, "ls-tree", "-r", "-z", "-l", "--full-tree", submission.commit, binary=True)
    except GitError as error:
        submission.problem = f"cannot read {ref}: {error}"
        return submission
    entries = [entry for entry in listing.split(b"\0") if entry]
    if len(entries) > MAX_ENTRIES:
        return refuse(submission, f"more than {MAX_ENTRIES:,} files in the commit", f"{len(entries):,} tree entries")
    sizes = {}
    for entry in entries:
        meta, _, raw = entry.partition(b"\t")
        mode, kind, blob, size = meta.decode("ascii", errors="replace").split()
        problem = path_problem(raw)
        if problem:
            return refuse(submission, f"refused: a file in the commit has {problem}", f"tree entry {raw[:200]!r}")
        name = raw.decode("utf-8")
        if is_student_file(name) and (kind != "blob" or mode not in REGULAR_FILE_MODES):
            return refuse(submission, "refused: a file students write is a link or a submodule, not a plain file",
                          f"{name!r} has mode {mode}")
        if kind == "blob":
            submission.tree[name] = (mode, blob)
            sizes[name] = int(size) if size.isdigit() else 0
    wanted = []
    for name in (name for name in submission.tree if is_student_file(name)):
        limit = MAX_MODEL_BYTES if name in MODEL_FILES else MAX_FILE_BYTES
        if sizes[name] > limit:
            if name in MODEL_FILES:
                return refuse(submission, f"refused: {name} is larger than {limit >> 20} MB", f"{name}: {sizes[name]:,} bytes")
            submission.notes.append(f"skipped {name!r}: {sizes[name]:,} bytes, over {limit >> 20} MB")
            continue
        wanted.append(name)
    if sum(sizes[name] for name in wanted) > MAX_STUDENT_BYTES:
        return refuse(submission, f"refused: the files students write add up to over {MAX_STUDENT_BYTES >> 20} MB",
                      f"{sum(sizes[name] for name in wanted):,} bytes")
    submission.files = dict(zip(wanted, read_blobs(path, [submission.tree[name][1] for name in wanted])))
    return submission


def refuse(submission: Submission, problem: str, detail: str) -> Submission:
    """Marks the submission ungradable: `problem` for everyone, `detail` (may quote the student) for the
    instructor; nothing of it is read further."""
    submission.problem, submission.files, submission.tree = problem, {}, {}
    submission.notes.append(detail)
    return submission


def read_blobs(repo: Path, blobs: list[str]) -> list[bytes]:
    """The contents of these blobs, in one `git cat-file --batch`."""
    if not blobs:
        return []
    output = git(repo, "cat-file", "--batch", binary=True, input="".join(f"{blob}\n" for blob in blobs).encode())
    contents, position = [], 0
    for _ in blobs:
        header_end = output.index(b"\n", position)
        size = int(output[position:header_end].split()[2])
        contents.append(output[header_end + 1: header_end + 1 + size])
        position = header_end + 1 + size + 1
    return contents


def tamper_flags(tree: dict, release: dict[str, str]) -> list[str]:
    """Protected paths that differ from the release (path -> blob id), as 'changed x', 'deleted y', 'added z'."""
    flags = []
    for path, blob in sorted(release.items()):
        if is_student_file(path):
            continue
        if path not in tree:
            flags.append(f"deleted {path}")
        elif tree[path][1] != blob:
            flags.append(f"changed {path}")
    for path, (mode, _) in sorted(tree.items()):
        if is_student_file(path):
            if mode not in REGULAR_FILE_MODES:
                flags.append(f"not a regular file {path}")
        elif path not in release and not path.startswith(MAY_ADD):
            flags.append(f"added {path}")
    return flags
