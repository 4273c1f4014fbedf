"""A class regraded in shards, on several machines, and merged into one gradebook.

    python -m grading regrade SUBMISSION... --shard 2/4 --seed N --out shard-2     (on each of 4 machines)
    python -m grading merge shard-1 shard-2 shard-3 shard-4 --out grades

`--shard I/N` grades every N-th submission of the class sorted by name, starting at the I-th, so each shard
gets the same share of the alphabet and every shard sees the same list. All shards must share one secret
(`--seed`): every student's tests then draw the same inputs whichever machine graded them. Each shard writes
what a regrade writes, for its students, and `shard.json`: which shard, the students, and digests of the
secret and of everything the grade depends on (tests, probe, template models, limits, ref, deadline, release).

`merge` checks that the shards belong together (all N present once, one secret, one digest, no student
twice), copies their results, feedback and logs, and writes the gradebook from all of them: the same files
as one regrade of the whole class with that secret.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

from grading.errors import GradingError
from grading.regrade import results
from grading.regrade.submissions import submission_name

MANIFEST = "shard.json"
FILES = (("results", ".json"), ("feedback", ".md"), ("logs", ".log"))  # a student's files in a regrade's output


class ShardError(GradingError):
    """A shard that cannot be graded or merged: said in one line per problem."""


def parse(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); ShardError unless 1 <= I <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ShardError(f"--shard {text!r}: write it as I/N, the I-th of N shards, 1 <= I <= N (e.g. 2/4)")
    return int(match[1]), int(match[2])


def select(paths: list[Path], shard: tuple[int, int]) -> list[Path]:
    """The submissions of shard I of N: every N-th of the class sorted by name, from the I-th."""
    index, count = shard
    return sorted(paths, key=submission_name)[index - 1::count]


def secret_digest(secret: int) -> str:
    """What a shard records of the secret: enough to tell two secrets apart, nothing to recover one."""
    return hashlib.sha256(f"pig-latin regrade secret {secret}".encode()).hexdigest()


def write_manifest(out: Path, shard: tuple[int, int], names: list[str], secret: int, grade_key: str,
                   tests: list[dict]):
    """OUT/shard.json: what merge checks before it puts this shard beside the others."""
    record = {"shard": shard[0], "of": shard[1], "students": sorted(names), "secret": secret_digest(secret),
              "grade_key": grade_key, "tests": tests}
    (out / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")


def read_manifest(folder: Path) -> dict:
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ShardError(f"{folder}: no {MANIFEST}; it is not the output of a regrade --shard I/N") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ShardError(f"{folder}/{MANIFEST} cannot be read ({error})") from None
    if not is_manifest(record):
        raise ShardError(f"{folder}/{MANIFEST} is not a shard's record")
    return record


def is_manifest(record) -> bool:
    """Whether `record` has what write_manifest writes, of the types it writes (student names as folder names)."""
    if not isinstance(record, dict) or not {"shard", "of", "students", "secret", "grade_key", "tests"} <= set(record):
        return False
    shard, count, names = record["shard"], record["of"], record["students"]
    return (all(type(value) is int for value in (shard, count)) and 1 <= shard <= count
            and isinstance(names, list) and all(isinstance(name, str) and name and "/" not in name
                                                 and name not in (".", "..") for name in names)
            and all(isinstance(record[key], str) for key in ("secret", "grade_key"))
            and isinstance(record["tests"], list)
            and all(isinstance(test, dict) and {"name", "hidden"} <= set(test) for test in record["tests"]))


def check_together(manifests: dict[Path, dict]) -> list[str]:
    """The problems that keep these shards from making one gradebook, one line each (none: they belong)."""
    problems = []
    first_folder, first = next(iter(manifests.items()))
    for folder, record in manifests.items():
        for key, what in (("of", "a different number of shards"), ("secret", "a different secret (--seed)"),
                          ("grade_key", "other tests, probe, model files, limits, --ref, --deadline or --release"),
                          ("tests", "other graded tests")):
            if record[key] != first[key]:
                problems.append(f"{folder} was graded with {what} than {first_folder}")
    count = first["of"]
    seen = {}
    for folder, record in manifests.items():
        if record["shard"] in seen:
            problems.append(f"{folder} and {seen[record['shard']]} are both shard {record['shard']}/{count}")
        seen[record["shard"]] = folder
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        problems.append(f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{count}' for i in missing)} "
                        "missing: merge needs every shard of the class")
    owner = {}
    for folder, record in manifests.items():
        for name in record["students"]:
            if name in owner:
                problems.append(f"{name} is graded in both {owner[name]} and {folder}")
            owner[name] = folder
    return problems


def merge(folders: list[Path], out: Path, log=print) -> list[dict]:
    """The shards' outputs as one regrade's, in `out` (which must not hold another regrade's gradebook)."""
    manifests = {folder: read_manifest(folder) for folder in folders}
    problems = check_together(manifests)
    if problems:
        raise ShardError("\n".join(problems))
    if out.resolve() in {folder.resolve() for folder in folders}:
        raise ShardError(f"--out {out} is one of the shards: merge into a folder of its own")
    if out.exists() and not out.is_dir():
        raise ShardError(f"--out {out} is a file: merge into a folder")
    if (out / "gradebook.csv").exists():
        raise ShardError(f"{out} holds a gradebook already: merge into an empty folder")
    graded = []
    for folder, record in manifests.items():
        for name in record["students"]:
            try:
                graded.append(results.read(folder / "results" / f"{name}.json", name))
            except results.ResultsError as error:
                raise ShardError(f"{error} (shard {record['shard']}/{record['of']})") from None
    out.mkdir(parents=True, exist_ok=True)
    for folder, record in manifests.items():
        for part, suffix in FILES:
            for name in record["students"]:
                source = folder / part / f"{name}{suffix}"
                if source.is_file():  # a submission not graded has no log
                    (out / part).mkdir(exist_ok=True)
                    shutil.copyfile(source, out / part / source.name)
    ordered = sorted(graded, key=lambda result: result["name"])
    results.write_gradebook(out / "gradebook.csv", ordered, next(iter(manifests.values()))["tests"])
    log(f"merged {len(manifests)} shards, {len(ordered)} students: wrote {out / 'gradebook.csv'}")
    return ordered
