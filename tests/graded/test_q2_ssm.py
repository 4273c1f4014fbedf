"""Q2 State-space models, graded: 5 points (discretisation 1, parallel scan 1, Mamba block 3).

The oracles (autograde/oracles.py): the closed forms of the discretisations, the scan and the selective
SSM written as plain loops over time in float64, and the block from its own parameters. As in Q1, `check`
(autograde/uniform.py) judges every function the same way — values over shapes and settings, dtype,
gradients, training mode, batch rows alone, a second call, causality — with every other function you
write replaced by its oracle, and every parameter (A_log, D, the norms' weights included) moved off its
initial value first. Tests add only what that check cannot see: that pscan has no loop over time and
does not hand its work to the given scans, and that the block runs the scan it is configured with.
"""

import ast

import pytest

from autograde import functions
from autograde.probe import GIVEN_SCAN_NAMES
from autograde.uniform import check, measured

DISCRETISATION = "Q2.1 Discretisation"
SCAN = "Q2.2 Parallel scan"
BLOCK = "Q2.3 Mamba block"


@pytest.mark.points(1, readme=DISCRETISATION)
def test_bilinear_discretisation(case):
    check(case, functions.DISCRETIZE)


def no_given_scan(source: str):
    """pscan's own code must not name the given scans (they refuse while it runs, too)."""
    tree = ast.parse(source)
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | \
        {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used = sorted(names & GIVEN_SCAN_NAMES)
    return None if not used else (f"it refers to the given {', '.join(used)}: Q2.2 asks for a parallel scan of "
                                  f"your own, in log space")


@pytest.mark.points(0.75, readme=SCAN)
def test_parallel_scan(case):
    case.expect(no_given_scan, case.source("mamba:pscan"), what="pscan", facet="property")
    check(case, functions.PSCAN)


@pytest.mark.points(0.25, readme=SCAN)
def test_parallel_scan_has_no_python_loop_over_time(case):
    """Counts torch operations at two lengths; it pays only when both answers are right, too."""
    runs = [check_values(case, length) for length in (64, 1024)]

    def grows_like_a_loop(calls_64, calls_1024):
        if calls_1024 <= 4 * max(calls_64, 1):
            return None
        return (f"it called {calls_64} torch operations for 64 steps and {calls_1024} for 1024: work that grows "
                f"with the length like that is a Python loop over time. Expected at most 4 × {calls_64} (a "
                f"constant number, or one that grows like log L)")

    case.expect(grows_like_a_loop, *(run.result.torch_calls for run in runs), what="pscan", facet="property")


def check_values(case, length):
    point = {**functions.PSCAN.sizes, "length": length, "batch": 1, "expanded": 2, "state": 3, "seed": 0}
    return measured(case, functions.PSCAN, point, "value", {"length": length}, count_torch_calls=True)


@pytest.mark.points(0.75, readme=BLOCK)
def test_mamba_block(case):
    check(case, functions.BLOCK)


@pytest.mark.points(0.5, readme=BLOCK)
def test_ssm(case):
    check(case, functions.SSM)


@pytest.mark.points(0.75, readme=BLOCK)
def test_selective_scan(case):
    check(case, functions.SELECTIVE_SCAN)


@pytest.mark.points(0.5, readme=BLOCK)
def test_selective_scan_runs_the_configured_scan(case):
    check(case, functions.CONFIGURED_SCAN)


@pytest.mark.points(0.5, readme=BLOCK)
def test_residual_block(case):
    check(case, functions.RESIDUAL)
