"""Q2 State-space models, hidden tests (instructor-only; `python -m grading regrade` runs them): 1 point.

The same check as the public tests (autograde/uniform.py), at sizes the public tests never use, drawn
from the regrade's secret: other hidden sizes (so another dt_rank), state sizes, expansions and
convolution kernels, scans of one step and of thousands, a batch of one, float32 or float64. A submission
fitted to the public tests' sizes (a kernel of 4 or a dt_rank of 1 hard-coded) loses these points.
"""

import pytest

from autograde import functions
from autograde.uniform import check
from hidden.secret_sizes import discretisation_sizes, scan_sizes, ssm_sizes

DISCRETISATION, SCAN, BLOCK = "Q2.1 Discretisation", "Q2.2 Parallel scan", "Q2.3 Mamba block"


@pytest.mark.points(0.25, readme=DISCRETISATION)
def test_hidden_discretisation_at_other_sizes(case):
    check(case, functions.DISCRETIZE, **discretisation_sizes(case))


@pytest.mark.points(0.25, readme=SCAN)
def test_hidden_parallel_scan_at_other_sizes_and_thousands_of_steps(case):
    check(case, functions.PSCAN, **scan_sizes(case))


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_mamba_block_with_other_kernels_expansions_and_sizes(case):
    check(case, functions.BLOCK, **ssm_sizes(case, functions.BLOCK))
    check(case, functions.RESIDUAL, **ssm_sizes(case, functions.RESIDUAL))


@pytest.mark.points(0.25, readme=BLOCK)
def test_hidden_ssm_and_selective_scan_at_other_sizes(case):
    check(case, functions.SSM, **ssm_sizes(case, functions.SSM))
    check(case, functions.SELECTIVE_SCAN, **ssm_sizes(case, functions.SELECTIVE_SCAN))
