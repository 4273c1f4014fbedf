"""The graded tests give the same verdicts both ways they run: in the student's process under pytest, and
split between the judge and the sandbox in the regrade (one definition, two runners). Checked on mutants
and correct alternatives from the corpus (grading/publish/mutants.py), spliced into the model files as a student
would write them, and on inputs drawn with the regrade's secret. (Instructor-only; about a minute.)"""

import inspect
import textwrap

import pytest

from grading.publish.corpus import run_variants
from grading.publish.mutants import ALTERNATIVES, HIDDEN_ONLY_MUTANTS, MUTANTS, _resolve
from grading.regrade import run as regrade
from grading.regrade import sandbox
from synthetic_submissions import ROOT

# A mistake of each kind the uniform check looks for (values, gradients through stand-ins, training mode,
# a second call, a promised dtype or device, a batch, long sequences, the hidden sizes) and correct rewrites.
CHOSEN = ["values-projected-from-the-key", "decoder-positions-not-added", "pscan-overflows-past-700-steps",
          "truncation-hard-codes-kernel-4", "attention-weights-detached", "block-gate-detached",
          "dropout-before-the-softmax", "discretisation-cached-by-shape", "mask-of-floats",
          "split-heads-reshaped-length-first", "chunked-two-level-heinsen", "attention-by-scaled-dot-product-attention"]
VARIANTS = {variant.name: variant for variant in MUTANTS + HIDDEN_ONLY_MUTANTS + ALTERNATIVES}


def spliced(variant) -> dict:
    """The model files with the variant in place of the reference function, as a student's file would be."""
    module, _, original = _resolve(variant.target)
    text = inspect.getsource(module)
    before = inspect.getsource(original)
    indent = before[: len(before) - len(before.lstrip())]
    after = textwrap.indent(variant.function_source(), indent)
    if variant.source:  # a whole new body keeps the reference's docstring out: only the code changes
        after = after.rstrip("\n") + "\n"
    assert text.count(before) == 1
    path = f"models/{module.__name__.split('.')[-1]}.py"
    files = {name: (ROOT / name).read_bytes() for name in ("models/transformer.py", "models/mamba.py")}
    files[path] = text.replace(before, after).encode()
    return files


@pytest.fixture(scope="module")
def grader(tmp_path_factory):
    grader = regrade.Regrade(ROOT, tmp_path_factory.mktemp("out"), sandbox.Limits(call_seconds=20))
    yield grader
    grader.close()


@pytest.fixture(scope="module")
def in_process() -> dict:
    jobs = [(VARIANTS[name], True) for name in CHOSEN]
    return {name: {row["name"]: row["outcome"] == "passed" for row in result["tests"]}
            for name, result in zip(CHOSEN, run_variants(jobs))}


@pytest.mark.parametrize("name", CHOSEN)
def test_a_variant_gets_the_same_verdicts_in_the_sandbox_as_under_pytest(name, grader, in_process):
    """Under pytest the variant ran its question's tests; the regrade runs every test, the other question's
    all passing."""
    verdicts, notes, _ = grader.compute(name, spliced(VARIANTS[name]))
    split = {test: verdict.outcome == "passed" for test, verdict in verdicts.items()}
    question = {test: split[test] for test in in_process[name]}
    assert question == in_process[name], ({test for test in question if question[test] != in_process[name][test]},
                                           notes)
    assert all(passed for test, passed in split.items() if test not in in_process[name])
    assert (name in [v.name for v in ALTERNATIVES]) == all(split.values())
