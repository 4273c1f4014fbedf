"""What a failed graded test tells the student (autograde/harness.py, autograde/diagnoses.py): what was
compared, expected, got, where, by how much, the tolerance; what else failed and what was right; and a
likely cause only where a rule is sure. Each rule is shown firing on the evidence it needs and staying
silent on evidence that only looks like it (the course staff's corpus of labelled mistakes checks every
rule)."""

import math

import torch

from autograde.diagnoses import Checked, diagnose, summary
from autograde.harness import Case, compare

TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}


def expected() -> torch.Tensor:
    return torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def checked(actual, wanted, facet="value", passed=None, **more) -> Checked:
    if passed is None:
        passed = compare(actual, wanted, what="x", hidden=False, **TOLERANCE) is None
    return Checked(passed, None if passed else "x differs", facet, more.pop("where", {}), actual, wanted,
                   atol=TOLERANCE["atol"], rtol=TOLERANCE["rtol"], **more)


def causes(items) -> set:
    return {finding.cause for finding in diagnose(items)}


def test_a_message_gives_expected_got_where_and_the_tolerance_and_a_hidden_one_no_values():
    got = expected().clone()
    got[1, 2, 3] += 0.5
    public = compare(got, expected(), what="the output", hidden=False, **TOLERANCE)
    assert "expected [" in public and "got      [" in public and "at index (1, 2, 3)" in public
    assert "1 of 75 values are off" in public and "tolerance: |got - expected| <= 1e-06 + 1e-05 * |expected|" in public
    hidden = compare(got, expected(), what="the output", hidden=True, **TOLERANCE)
    assert "expected [" not in hidden and "got      [" not in hidden and "(1, 2, 3)" not in hidden
    assert "largest difference 0.5" in hidden and "a hidden test" in hidden


def test_a_message_says_what_differs_and_never_why():
    got = expected().clone()
    got[0, 0, 0] = math.inf
    message = compare(got, expected(), what="pscan", hidden=False, **TOLERANCE)
    assert "1 of 75 values are not finite" in message and "overflow" not in message
    assert compare(got[0], expected(), what="pscan", hidden=False, **TOLERANCE) == \
        "pscan: expected shape (3, 5, 5), got (5, 5)"


def test_a_transposed_result_is_named_and_a_merely_wrong_one_is_not():
    assert causes([checked(expected().transpose(-1, -2), expected())]) == {"transposed"}
    assert causes([checked(expected() + 1, expected())]) == set()


def test_a_lost_sign_is_named():
    assert causes([checked(expected().abs(), expected())]) == {"sign"}


def test_a_result_matching_a_named_mistake_says_which_unless_that_mistake_gives_the_right_answer():
    wrong = expected() + 1
    item = checked(wrong, expected(), alternatives={"no D u_t term": ("missing-step", wrong)})
    assert [finding.says for finding in diagnose([item])] == ["it matches what no D u_t term would give"]
    harmless = checked(wrong, expected(), alternatives={"a harmless variant": ("other", expected())})
    assert diagnose([harmless]) == []


def test_an_explanation_must_explain_every_failure_it_applies_to_and_rounding_is_none():
    wrong = expected() + 1
    matched = checked(wrong, expected(), alternatives={"no D u_t term": ("missing-step", wrong)})
    unexplained = checked(expected() * 3, expected(), alternatives={"no D u_t term": ("missing-step", wrong)})
    assert causes([matched]) == {"missing-step"} and causes([matched, unexplained]) == set()
    rounded = checked(expected().transpose(-1, -2) * (1 + 1e-9), expected().transpose(-1, -2))
    rounded.passed = False  # off by far less than ten times the tolerance: no structural mistake
    assert causes([rounded]) == set()


def test_right_values_and_wrong_gradients_say_that_gradients_are_cut_and_wrong_values_do_not():
    right, wrong = checked(expected(), expected()), checked(expected() + 1, expected(), facet="gradient")
    assert causes([right, wrong]) == {"gradient"}
    assert "gradient" not in causes([checked(expected() + 1, expected()), wrong])


def test_right_in_eval_mode_and_wrong_in_training_mode_names_training_mode():
    assert causes([checked(expected(), expected()), checked(expected() + 1, expected(), facet="train")]) == {"training"}
    assert causes([checked(expected(), expected()), checked(expected(), expected(), facet="train"),
                   checked(expected() + 1, expected(), facet="dropout")]) == {"dropout"}


def test_rows_right_alone_and_wrong_together_name_the_batch():
    whole = checked(expected() + 1, expected(), where={"setting": 0})
    alone = checked(expected()[-1:], expected()[-1:], facet="row", where={"setting": 0})
    assert causes([whole, alone]) == {"batch"}
    assert "batch" not in causes([whole, checked(expected()[-1:] + 1, expected()[-1:], facet="row",
                                                 where={"setting": 0})])


def test_only_a_failed_causality_check_names_the_future():
    item = Checked(False, "outputs changed", "causal", {}, proves="causal")
    assert causes([item]) == {"causal"}
    assert causes([Checked(False, "outputs changed", "causal", {})]) == set()


def test_an_overflow_is_named_only_when_shorter_sequences_were_right():
    short = checked(expected(), expected(), where={"length": 7})
    overflowing = expected().clone()
    overflowing[0, 0, 0] = math.inf
    long = checked(overflowing, expected(), where={"length": 1024})
    assert causes([short, long]) == {"overflow"}
    wrong_short = checked(expected() + 1, expected(), where={"length": 7})
    assert "overflow" not in causes([wrong_short, long])


def test_the_summary_lists_what_else_failed_and_what_was_right_by_facet():
    items = [checked(expected() + 1, expected()), checked(expected() + 1, expected(), facet="gradient"),
             checked(expected(), expected(), facet="train"), checked(expected(), expected(), facet="row")]
    assert summary(items) == ["also wrong: the gradients (1)",
                              "right: training mode without dropout, each row of a batch alone"]


def test_a_verdict_leads_with_the_first_failure_then_the_facts_then_a_sure_cause():
    case = Case("demo", run_now=True)
    case.expect_close(expected(), expected(), what="the values", **TOLERANCE)
    case.expect_close(expected() * 2, expected(), what="the gradient", facet="gradient", **TOLERANCE)
    verdict = case.verdict()
    lines = verdict.message.splitlines()
    assert lines[0] == "the gradient differs from the expected values"
    assert "  right: the values" in lines
    assert lines[-1].startswith("  likely cause: the values are right and the gradients are not")
    assert verdict.diagnoses == (("gradient", "gradient"),)


def test_a_stub_is_the_whole_story():
    from autograde.wire import Call, Outcome
    from autograde.harness import Result

    result = Result(Call("transformer:causal_mask"), "causal_mask")
    result.outcome = Outcome({"status": "error", "not_implemented": True}, {})
    case = Case("demo", run_now=False)
    case.expect_close(result.output, torch.ones(2), what="the mask", **TOLERANCE)
    case.expect_close(torch.ones(2) * 3, torch.ones(2), what="another", **TOLERANCE)
    message = case.verdict().message
    assert message.startswith("causal_mask is not written yet") and "another" not in message
