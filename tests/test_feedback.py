"""What a failed graded test tells the student (autograde/harness.py): expected, got, where, the
tolerance, and, where the comparison can tell, the likely mistake — a constant factor such as √d, a
transposition, a lost sign, what a named mistake would have given, right only for short sequences or in
float64 only. Hidden tests show no values."""

import math

import torch

from autograde.harness import Case, compare, summarise_cases

TOLERANCE = {"atol": 1e-6, "rtol": 1e-5}


def expected() -> torch.Tensor:
    return torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_a_result_off_by_root_d_names_the_factor():
    message = compare(expected() * math.sqrt(8), expected(), what="attention", hidden=False,
                      factors={"√d": math.sqrt(8), "1/√d": 1 / math.sqrt(8)}, **TOLERANCE)
    assert "likely mistake: it is 2.828 × the expected values, that is √d" in message


def test_a_transposed_result_is_named():
    message = compare(expected().transpose(-1, -2), expected(), what="weights", hidden=False, **TOLERANCE)
    assert "transposed (the last two axes swapped)" in message


def test_a_lost_sign_is_named():
    message = compare(expected().abs(), expected(), what="scan", hidden=False, **TOLERANCE)
    assert "a sign is lost" in message


def test_a_result_that_matches_a_named_mistake_says_which():
    wrong = expected() + 1
    message = compare(wrong, expected(), what="block", hidden=False, alternatives={"no D u_t term": wrong}, **TOLERANCE)
    assert "likely mistake: it matches what no D u_t term would give" in message


def test_a_message_gives_expected_got_where_and_the_tolerance_and_a_hidden_one_no_values():
    got = expected().clone()
    got[1, 2, 3] += 0.5
    public = compare(got, expected(), what="the output", hidden=False, **TOLERANCE)
    assert "expected [" in public and "got      [" in public and "at index (1, 2, 3)" in public
    assert "1 of 75 values are off" in public and "tolerance: |got - expected| <= 1e-06 + 1e-05 * |expected|" in public
    hidden = compare(got, expected(), what="the output", hidden=True, **TOLERANCE)
    assert "expected [" not in hidden and "got      [" not in hidden and "(1, 2, 3)" not in hidden
    assert "largest difference 0.5" in hidden and "a hidden test" in hidden


def test_an_overflow_is_called_one():
    got = expected().clone()
    got[0, 0, 0] = math.inf
    assert "an overflow?" in compare(got, expected(), what="pscan", hidden=False, **TOLERANCE)


def test_cases_that_pass_short_and_fail_long_say_right_only_for_short_sequences():
    lines = summarise_cases([({"length": 7}, True), ({"length": 257}, True), ({"length": 1024}, False)])
    assert lines == ["  right only for short sequences: right up to length 257, wrong from 1024 on"]


def test_cases_that_pass_in_float64_only_say_so():
    assert summarise_cases([({"dtype": "float64"}, True), ({"dtype": "float32"}, False)]) == [
        "  right in float64 only: in float32 something overflows or loses precision"]


def test_a_verdict_leads_with_the_first_failure_and_counts_the_others():
    case = Case("demo", run_now=True)
    for length in (1, 2, 3):
        case.expect_close(torch.ones(length) * (2 if length > 1 else 1), torch.ones(length), what=f"length {length}",
                          where={"length": length}, **TOLERANCE)
    verdict = case.verdict()
    assert verdict.startswith("length 2 differs") and "(1 more comparison failed)" in verdict
    assert "right only for short sequences: right up to length 1, wrong from 2 on" in verdict
