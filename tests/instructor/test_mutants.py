"""The graded tests can fail: every plausible mistake in the corpus loses points, every correct
alternative keeps all 10 and every hidden point, every hidden-only mistake (one that fits the public
tests' sizes) keeps the public points and loses hidden ones; and every diagnosis names a cause its mutant
has. (Instructor-only: the corpus would hand students a list of answers.)"""

from pathlib import Path

import pytest

from autograde import points
from autograde.diagnoses import RULES
from autograde.functions import EVERY_FUNCTION
from grading.publish.corpus import charged_everywhere, corpus_jobs, diagnosis_figures, probe_name, run_variants
from grading.publish.mutants import ALTERNATIVES, HIDDEN_ONLY_MUTANTS, MUTANTS
from grading.publish.template import find_regions

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILES = {"models.transformer": ROOT / "models" / "transformer.py", "models.mamba": ROOT / "models" / "mamba.py"}
# The kinds of mistake the graders must see, each with a mutant of every kind (issue 19): wrong only in the
# gradient, only in training mode, only on a second call, only in a promised type, and property-only answers.
KINDS = {"gradient", "training", "dropout", "state", "dtype", "batch", "squeeze", "causal", "wrong", "shape"}


@pytest.fixture(scope="module")
def results() -> dict:
    """name -> graded results (public and hidden) with that variant in place; one pytest session for all."""
    jobs = corpus_jobs()
    return {variant.name: result for (variant, _), result in zip(jobs, run_variants(jobs))}


def graded_functions() -> set[str]:
    return {f"{module}:{region.qualname}" for module, path in MODEL_FILES.items()
            for region in find_regions(path.read_text(), str(path))}


def test_the_corpus_has_a_mutant_and_an_alternative_for_every_graded_function_and_every_kind():
    everything = MUTANTS + HIDDEN_ONLY_MUTANTS + ALTERNATIVES
    assert len({variant.name for variant in everything}) == len(everything), "names repeat"
    without_alternative = graded_functions() - {variant.target for variant in ALTERNATIVES}
    assert without_alternative == set(), f"no correct alternative for {sorted(without_alternative)}"
    without_mutant = graded_functions() - {variant.target for variant in MUTANTS}
    assert without_mutant == set(), f"no mutant of {sorted(without_mutant)}"
    missing = KINDS - {cause for variant in MUTANTS for cause in variant.causes}
    assert missing == set(), f"no mutant of the kinds {sorted(missing)}"
    assert all(variant.causes for variant in MUTANTS + HIDDEN_ONLY_MUTANTS), "every mutant names its causes"
    assert {f"models.{fn.target}" for fn in EVERY_FUNCTION} == graded_functions(), "a function with no declaration"


@pytest.mark.parametrize("variant", MUTANTS, ids=lambda variant: variant.name)
def test_every_mutant_loses_points(variant, results):
    result = results[variant.name]
    assert result["lost"] > 0, f"{variant.name} ({variant.why}) keeps all {result['max']:g} points"


@pytest.mark.parametrize("variant", HIDDEN_ONLY_MUTANTS, ids=lambda variant: variant.name)
def test_every_hidden_only_mutant_keeps_the_public_points_and_loses_hidden_ones(variant, results):
    result = results[variant.name]
    assert result["lost"] == 0, f"{variant.name}: the public tests see it; move it to MUTANTS"
    assert result["hidden_lost"] > 0, f"{variant.name} ({variant.why}) keeps every hidden point"


@pytest.mark.parametrize("variant", ALTERNATIVES, ids=lambda variant: variant.name)
def test_every_correct_alternative_keeps_all_ten_points_and_every_hidden_point(variant, results):
    result = results[variant.name]
    lost = {row["name"]: row["message"] for row in result["tests"] if row["outcome"] != "passed"}
    assert result["tests"] and not lost, f"{variant.name} ({variant.why}) lost: {lost}"
    assert result["max"] == 10 and result["hidden_max"] == points.total(ROOT, "tests/hidden") == 2


def test_every_hidden_test_fails_some_mutant(results):
    """A hidden test no mistake can fail would be points for free."""
    hidden = {row["name"] for result in results.values() for row in result["tests"] if row["hidden"]}
    caught = {row["name"] for variant in MUTANTS + HIDDEN_ONLY_MUTANTS for row in results[variant.name]["tests"]
              if row["hidden"] and row["outcome"] != "passed"}
    assert hidden and hidden - caught == set(), f"no mutant fails {sorted(hidden - caught)}"


@pytest.mark.parametrize("variant", [variant for variant in MUTANTS if variant.name in charged_everywhere()],
                         ids=lambda variant: variant.name)
def test_a_mistake_in_one_function_costs_points_only_in_the_tests_that_run_that_function(variant, results):
    """The README's promise: while a test runs one function, every other one is replaced by its oracle. These
    mutants (the first of each function) run every test of their question."""
    rows = results[variant.name]["tests"]
    charged = {row["name"]: row["targets"] for row in rows if row["outcome"] != "passed"}
    elsewhere = {name: targets for name, targets in charged.items() if probe_name(variant.target) not in targets}
    assert len(rows) > len(charged), "it ran only its own tests"
    assert charged and not elsewhere, f"{variant.name} in {variant.target} cost points in tests of {elsewhere}"


@pytest.mark.parametrize("variant", MUTANTS + HIDDEN_ONLY_MUTANTS, ids=lambda variant: variant.name)
def test_every_diagnosis_names_a_cause_its_mutant_has(variant, results):
    """A wrong diagnosis costs a student more than none: a rule may fire only on mutants of its cause."""
    wrong = [(row["name"], rule, cause) for row in results[variant.name]["tests"] for rule, cause in row["diagnoses"]
             if cause not in variant.causes]
    assert not wrong, f"{variant.name} (causes {variant.causes}) was diagnosed as {wrong}"


def test_every_diagnosis_rule_is_right_on_some_mutant(results):
    """A rule no mutant shows firing is a rule nobody has checked."""
    figures = diagnosis_figures(results)
    silent = {rule.__name__ for rule in RULES} - {name for name, counts in figures["rules"].items() if counts["right"]}
    assert silent == set(), f"no mutant shows these rules right: {sorted(silent)}"
