"""A small synthetic semester for the course commands' tests (tests/instructor/test_course.py): five students
whose repositories are local bare repositories standing in for GitHub, dated around a deadline in the past.

- alice: honest and on time; her own code (correct alternatives of the mutant corpus, not the reference's
  lines), a full writeup and notebook answer cells (one of them hostile to the review site);
- bob: partly right and on time: the Transformer is the reference, the Mamba file still the stubs;
- carol: late: stubs on time, then the reference 34 hours after the deadline (two days late);
- dana: on time, with her own code (other correct alternatives than alice's);
- eve: on time, dana's code with every local variable renamed: the copied pair.

`a_result` is a regrade's record written by hand, for the tests of the course commands that need no regrade;
`rubric_without_late_days` a rubric that accepts no late work, for regrades of the synthetic class.
"""

import json
import re
import subprocess
import textwrap
from pathlib import Path

from grading.publish.mutants import ALTERNATIVES
from grading.publish.template import find_regions
from synthetic_submissions import ROOT, WRITEUP, commit, make_submission, reference

DEADLINE = "2026-10-01 23:59 +0000"
ON_TIME = "2026-10-01T12:00:00+00:00"
LATE = "2026-10-03T10:00:00+00:00"  # 34 h 1 min after the deadline: past one day and the 15 minutes' grace
T, M = "models/transformer.py", "models/mamba.py"

ALICE = ["attention-with-torch-einsum-and-masked-fill", "encoder-one-step-per-line", "decoder-with-functools-reduce",
         "heinsen-with-complex-from-polar", "residual-with-functional-rms-norm", "ssm-by-slicing"]
DANA = ["mask-by-comparing-positions", "split-with-view-and-transpose", "merge-with-transpose-and-reshape",
        "attention-with-matmul-where-and-minus-1e9", "positions-with-exp-log-div-term", "encoder-layer-step-by-step",
        "decoder-layer-named-steps", "bilinear-by-broadcasting", "doubling-scan", "block-with-pad-and-functional-conv",
        "selective-scan-by-broadcasting", "residual-added-last"]
# eve's renames: local variables of dana's functions only (never a parameter, attribute or module name)
RENAMES = {"batch": "n_batch", "length": "seq_len", "heads": "n_heads", "size": "dim", "scores": "logits",
           "allowed": "visible", "weights": "probs", "position": "pos", "div_term": "freqs", "table": "pe",
           "after_self": "h1", "after_cross": "h2", "dA": "dt_A", "inverse": "denom", "offset": "step",
           "xz": "proj", "E": "width"}

HOSTILE_ANSWER = ("The cross-attention reads the vowel first: $a_{ij}$ peaks at the first vowel.\n\n"
                  "<script>window.pwned = 'answer'</script><img src=x onerror=\"window.pwned = 'img'\">"
                  "[a link](https://example.com)")


def with_function(source: str, path: str, qualname: str, function_source: str) -> str:
    """The module with `qualname`'s solution region replaced by the body of `function_source` (a whole def)."""
    (region,) = [region for region in find_regions(source, path) if region.qualname == qualname]
    body = textwrap.dedent(function_source).strip("\n").splitlines()[1:]
    lines = source.splitlines()
    lines[region.begin + 1:region.end] = [region.indent + line[4:] if line.strip() else "" for line in body]
    return "\n".join(lines) + "\n"


def with_alternatives(source: str, path: str, names: list[str]) -> str:
    """The module with the solution region of each named correct alternative's function replaced by its body."""
    module = path[:-len(".py")].replace("/", ".")
    for variant in (variant for variant in ALTERNATIVES if variant.name in names):
        target_module, qualname = variant.target.split(":")
        if target_module == module:
            source = with_function(source, path, qualname, variant.source)
    return source


def renamed(source: str, path: str) -> str:
    """The module with RENAMES applied inside its solution regions only."""
    lines = source.splitlines()
    for region in find_regions(source, path):
        for index in range(region.begin + 1, region.end):
            for old, new in RENAMES.items():
                lines[index] = re.sub(rf"(?<![\w.]){old}\b", new, lines[index])
    return "\n".join(lines) + "\n"


def notebook_with_answer(release: Path, path: str, grade_id: str, answer: str) -> str:
    """The template's notebook with one answer cell written."""
    notebook = json.loads(subprocess.run(["git", "show", f"main:{path}"], cwd=release, capture_output=True, text=True,
                                         check=True).stdout)
    for cell in notebook["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            cell["source"] = answer
    return json.dumps(notebook, indent=1) + "\n"


def students(release: Path, remotes: Path) -> dict[str, Path]:
    """name -> the bare repository ("GitHub") of each student of the semester."""
    transformer, mamba = reference("transformer.py"), reference("mamba.py")
    dana = {T: with_alternatives(transformer, T, DANA), M: with_alternatives(mamba, M, DANA)}
    writeup = WRITEUP.replace("## Q1 Transformer", "### W1 Transformer: model and data size (Q1, 0.5 points)\n\n"
                                                   "## Q1 Transformer")
    made = {
        "alice": make_submission(release, remotes, "alice", {
            T: with_alternatives(transformer, T, ALICE), M: with_alternatives(mamba, M, ALICE), "README.md": writeup,
            "notebooks/attention.ipynb": notebook_with_answer(release, "notebooks/attention.ipynb",
                                                              "attention_reading", HOSTILE_ANSWER)},
            date=ON_TIME, bare=True),
        "bob": make_submission(release, remotes, "bob", {T: transformer, "README.md": "# Bob's writeup\n"},
                               date=ON_TIME, bare=True),
        "dana": make_submission(release, remotes, "dana", dana, date=ON_TIME, bare=True),
        "eve": make_submission(release, remotes, "eve", {path: renamed(text, path) for path, text in dana.items()},
                               date=ON_TIME, bare=True),
    }
    work = make_submission(release, remotes, "carol-work", {"README.md": "# Carol\n"}, date=ON_TIME)
    commit(work, {T: transformer, M: mamba}, date=LATE, message="finished, late")
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(remotes / "carol.git")], check=True)
    made["carol"] = remotes / "carol.git"
    return made


def a_result(name: str, commit: str, earned: float) -> dict:
    """A regrade's results record (grading/regrade/results.py) of one public test worth 10 and one hidden worth 2."""
    tests = [{"name": "test_public", "question": "Q1", "readme": "", "hidden": False, "points": 10.0,
              "earned": earned, "outcome": "passed" if earned else "failed", "message": ""},
             {"name": "test_hidden", "question": "Q1", "readme": "", "hidden": True, "points": 2.0, "earned": 2.0,
              "outcome": "passed", "message": ""}]
    return {"name": name, "commit": commit, "status": "ok", "tamper": [], "review": [], "notes": [],
            "grade": round((earned + 2) * 10 / 12, 2), "public": earned, "public_max": 10.0, "hidden": 2.0,
            "hidden_max": 2.0, "tests": tests}


def rubric_without_late_days(folder: Path) -> Path:
    """The shipped rubric with `max_days = 0`, in `folder`: with it, `regrade --deadline` grades nothing dated
    after the deadline (and its grace), as the synthetic class's `partly` needs."""
    shipped = (ROOT / "grading" / "course" / "rubric.toml").read_text()
    assert shipped.count("\nmax_days = ") == 1
    path = folder / "rubric-without-late-days.toml"
    path.write_text(re.sub(r"\nmax_days = \d+", "\nmax_days = 0", shipped))
    return path
