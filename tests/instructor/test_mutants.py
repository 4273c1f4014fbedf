"""The graded tests can fail: every plausible mistake in the corpus loses points, every correct
alternative keeps all 10 and every hidden point, and every hidden-only mistake (one that fits the public
tests' inputs) keeps the public points and loses hidden ones. (Instructor-only: the corpus would hand
students a list of answers.)"""

from pathlib import Path

import pytest

from grading.publish.mutants import ALTERNATIVES, HIDDEN_ONLY_MUTANTS, MUTANTS, corpus_jobs, run_variants
from grading.publish.template import find_regions

ROOT = Path(__file__).resolve().parents[2]
STUDENT_FILES = {"models.transformer": ROOT / "models" / "transformer.py", "models.mamba": ROOT / "models" / "mamba.py"}


@pytest.fixture(scope="module")
def results() -> dict:
    """name -> graded results (public and hidden) with that variant in place; one pytest session for all."""
    jobs = corpus_jobs()
    return {variant.name: result for (variant, _), result in zip(jobs, run_variants(jobs))}


def graded_functions() -> set[str]:
    return {f"{module}:{region.qualname}" for module, path in STUDENT_FILES.items()
            for region in find_regions(path.read_text(), str(path))}


def test_the_corpus_has_twenty_mutants_and_an_alternative_for_every_graded_function():
    assert len(MUTANTS) >= 20, f"only {len(MUTANTS)} mutants"
    everything = MUTANTS + HIDDEN_ONLY_MUTANTS + ALTERNATIVES
    assert len({variant.name for variant in everything}) == len(everything), "names repeat"
    without_alternative = graded_functions() - {variant.target for variant in ALTERNATIVES}
    assert without_alternative == set(), f"no correct alternative for {sorted(without_alternative)}"
    without_mutant = graded_functions() - {variant.target for variant in MUTANTS}
    assert without_mutant == set(), f"no mutant of {sorted(without_mutant)}"


@pytest.mark.parametrize("variant", MUTANTS, ids=lambda variant: variant.name)
def test_every_mutant_loses_points(variant, results):
    result = results[variant.name]
    assert result["total"] < result["max"], f"{variant.name} ({variant.why}) keeps all {result['max']:g} points"


@pytest.mark.parametrize("variant", HIDDEN_ONLY_MUTANTS, ids=lambda variant: variant.name)
def test_every_hidden_only_mutant_keeps_the_public_points_and_loses_hidden_ones(variant, results):
    result = results[variant.name]
    assert result["total"] == result["max"], f"{variant.name}: the public tests see it; move it to MUTANTS"
    assert result["hidden_total"] < result["hidden_max"], f"{variant.name} ({variant.why}) keeps every hidden point"


@pytest.mark.parametrize("variant", ALTERNATIVES, ids=lambda variant: variant.name)
def test_every_correct_alternative_keeps_all_ten_points_and_every_hidden_point(variant, results):
    result = results[variant.name]
    lost = {row["name"]: row["message"] for row in result["tests"] if row["outcome"] != "passed"}
    assert result["total"] == result["max"] == 10 and not lost, f"{variant.name} ({variant.why}) lost: {lost}"
    assert result["hidden_total"] == result["hidden_max"] > 0


def test_every_hidden_test_fails_some_mutant(results):
    """A hidden test no mistake can fail would be points for free."""
    hidden = {row["name"] for result in results.values() for row in result["tests"] if row["hidden"]}
    caught = {row["name"] for variant in MUTANTS + HIDDEN_ONLY_MUTANTS for row in results[variant.name]["tests"]
              if row["hidden"] and row["outcome"] != "passed"}
    assert hidden and hidden - caught == set(), f"no mutant fails {sorted(hidden - caught)}"


@pytest.mark.parametrize("variant", MUTANTS + HIDDEN_ONLY_MUTANTS, ids=lambda variant: variant.name)
def test_a_mistake_in_one_function_costs_points_only_in_the_tests_that_run_that_function(variant, results):
    """The README's promise: while a test runs one function, every other one is replaced by its oracle."""
    charged = {row["name"]: row["targets"] for row in results[variant.name]["tests"] if row["outcome"] != "passed"}
    target = variant.target.removeprefix("models.")  # the probe names functions "mamba:pscan"
    elsewhere = {name: targets for name, targets in charged.items() if target not in targets}
    assert charged and not elsewhere, f"{variant.name} in {variant.target} cost points in tests of {elsewhere}"
