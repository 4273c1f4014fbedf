"""A class regraded in shards and merged (`regrade --shard I/N --seed S`, then `merge`) gives the gradebook,
the feedback and the results one regrade of the whole class gives with that secret; shards that do not
belong together are refused, one line each. (Instructor-only; about a minute on two cores.)"""

import csv
import json
import shutil
import subprocess
import sys

import pytest

from synthetic_submissions import LIMITS, ROOT, make_release, make_submission, mutated, reference, regrade

SECRET = "424242"
SHARDS = 3


def merge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grading", "merge", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """(the submissions, one run's output, the shards' outputs, the merged output)."""
    root = tmp_path_factory.mktemp("sharded")
    release = make_release(root / "release")
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    T, M = "models/transformer.py", "models/mamba.py"
    variants = {"ada": {T: transformer, M: mamba}, "bo": {"README.md": "# Not started\n"},
                "cy": {T: transformer, M: mutated(mamba, "truncation-hard-codes-kernel-4")},  # loses a hidden test
                "dee": {T: transformer}, "eve": {M: mamba}}
    made = [make_submission(release, root / "class", name, files, bare=True) for name, files in variants.items()]
    common = ["--release", str(release), "--seed", SECRET, *LIMITS]
    one = root / "one"
    result = regrade(*map(str, made), "--out", str(one), *common)
    assert result.returncode == 0, result.stderr
    outs = []
    for index in range(1, SHARDS + 1):
        out = root / f"shard-{index}"
        result = regrade(*map(str, reversed(made)), "--out", str(out), "--shard", f"{index}/{SHARDS}", *common)
        assert result.returncode == 0, result.stderr
        outs.append(out)
    merged = root / "merged"
    result = merge(*map(str, outs), "--out", str(merged))
    assert result.returncode == 0, result.stderr
    assert f"merged {SHARDS} shards, {len(made)} students" in result.stdout
    return made, one, outs, merged


def test_the_merged_gradebook_is_the_one_a_single_run_writes(sharded):
    _, one, _, merged = sharded
    assert (merged / "gradebook.csv").read_text() == (one / "gradebook.csv").read_text()
    grades = {row["student"]: row["grade"] for row in csv.DictReader((merged / "gradebook.csv").open())}
    assert grades == {"ada": "10", "bo": "0", "cy": "9.79", "dee": "5", "eve": "5"}, "a shard graded differently"
    for part in ("feedback", "results", "logs"):
        assert sorted(path.name for path in (merged / part).iterdir()) == sorted(
            path.name for path in (one / part).iterdir())
    for path in (one / "feedback").iterdir():
        assert (merged / "feedback" / path.name).read_text() == path.read_text()
    for path in (one / "results").iterdir():
        alone, sharded_ = (json.loads(folder.joinpath("results", path.name).read_text()) for folder in (one, merged))
        assert {**alone, "seconds": 0} == {**sharded_, "seconds": 0}


def test_each_shard_grades_its_own_share_of_the_class(sharded):
    made, _, outs, _ = sharded
    shares = [json.loads((out / "shard.json").read_text())["students"] for out in outs]
    assert sorted(name for share in shares for name in share) == ["ada", "bo", "cy", "dee", "eve"]
    assert shares == [["ada", "dee"], ["bo", "eve"], ["cy"]], "every N-th student by name, whatever the order given"
    for out, share in zip(outs, shares):
        assert sorted(path.stem for path in (out / "results").iterdir()) == share


def test_a_shard_without_the_shared_secret_is_refused(sharded, tmp_path):
    made, _, _, _ = sharded
    result = regrade(str(made[0]), "--out", str(tmp_path / "out"), "--shard", "1/2")
    assert result.returncode == 1 and not (tmp_path / "out").exists()
    assert result.stderr.strip() == ("grading regrade: --shard 1/2 needs --seed: every shard must draw the tests' "
                                     "inputs with the same secret")
    result = regrade(str(made[0]), "--out", str(tmp_path / "out"), "--shard", "3/2", "--seed", "1")
    assert result.returncode == 2 and "write it as I/N, the I-th of N shards" in result.stderr.splitlines()[-1]


def edited(source, target, **changes):
    shutil.copytree(source, target)
    record = json.loads((target / "shard.json").read_text())
    (target / "shard.json").write_text(json.dumps({**record, **changes}))
    return target


def renamed_result(source, target):
    """A copy of shard 3 whose student cy's results record claims to be ada's (whom shard 1 grades)."""
    shutil.copytree(source, target)
    path = target / "results" / "cy.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "name": "ada"}))
    return target


@pytest.mark.parametrize("case", ["missing", "twice", "secret", "tests", "not a shard", "into a shard",
                                  "students not a list", "a name that climbs", "shard past N", "into a file",
                                  "under a file", "another's record"])
def test_shards_that_do_not_belong_together_are_refused_in_one_line_each(sharded, tmp_path, case):
    _, _, outs, _ = sharded
    first, second, third = map(str, outs)
    cases = {
        "missing": lambda: ([first, third], f"shard 2/{SHARDS} missing: merge needs every shard of the class"),
        "twice": lambda: ([first, second, third, str(edited(outs[2], tmp_path / "copy", shard=2, students=[]))],
                          "are both shard 2/3"),
        "secret": lambda: ([first, second, str(edited(outs[2], tmp_path / "other", secret="0" * 64))],
                           "was graded with a different secret (--seed) than"),
        "tests": lambda: ([first, second, str(edited(outs[2], tmp_path / "other", grade_key="0" * 64))],
                          "was graded with other tests, probe, model files, limits, --ref, --deadline or --release"),
        "not a shard": lambda: ([first, second, third, str(tmp_path)],
                                "no shard.json; it is not the output of a regrade"),
        "into a shard": lambda: ([first, second, third, "--out", first],
                                 "is one of the shards: merge into a folder of its own"),
        "students not a list": lambda: ([first, second, str(edited(outs[2], tmp_path / "other", students=5))],
                                        "shard.json is not a shard's record"),
        "a name that climbs": lambda: ([first, second, str(edited(outs[2], tmp_path / "other", students=[".."]))],
                                       "shard.json is not a shard's record"),
        "shard past N": lambda: ([first, second, str(edited(outs[2], tmp_path / "other", shard=4))],
                                 "shard.json is not a shard's record"),
        "into a file": lambda: ([first, second, third, "--out", str(ROOT / "README.md")],
                                "is a file: merge into a folder"),
        "under a file": lambda: ([first, second, third, "--out", str(ROOT / "README.md" / "grades")],
                                 "README.md/grades: Not a directory"),
        "another's record": lambda: ([first, second, str(renamed_result(outs[2], tmp_path / "other"))],
                                     "the record of 'ada', not of 'cy'"),
    }
    args, expected = cases[case]()
    result = merge(*args, *([] if "--out" in args else ["--out", str(tmp_path / "merged")]))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("grading merge: ") and expected in result.stderr
    assert not (tmp_path / "merged").exists(), "a refused merge wrote something"
