"""The graded-test framework: how a graded test calls your code, what it compares it with, and how
points are counted. pytest uses it in your process; the course staff's regrade uses the same code to
judge from outside a sandbox. You never need to edit it.

    oracles.py   trusted versions of every function you write (float64, from a module's parameters)
    probe.py     runs one call of your code, with every other function you write replaced by its oracle
    harness.py   a graded test's `case`: inputs, calls, expectations, the verdict and its message
    plugin.py    the pytest plugin: points per test, short failure reports, the score table
"""
