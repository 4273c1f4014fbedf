"""Sizes for the hidden tests, drawn from the case (in the regrade, from its secret): never the public
tests' base sizes, always including the edges a fitted answer misses (a batch of one, one position) as
variants, and never those edges in the first sizes, where they would hide a mistake that mixes rows or
positions for the whole test, whatever the secret."""

from autograde.functions import ATTENTION, DISCRETIZE, PSCAN


def dtype(case) -> str:
    return case.choice(["float32", "float64"])


def mask_sizes(case) -> dict:
    queries, keys = case.choice([2, 3, 9, 12]), case.choice([4, 6, 10, 13])
    return {"sizes": {"queries": queries, "keys": keys},
            "variants": ({"keys": queries}, {"queries": keys}, {"queries": 1, "keys": case.choice([2, 5])})}


def heads_sizes(case) -> dict:
    heads = case.choice([1, 2, 6, 8])
    return {"sizes": {"batch": case.choice([2, 3, 4]), "length": case.choice([2, 6, 11]), "hidden": heads *
                      case.choice([1, 3, 5]), "heads": heads, "dtype": dtype(case)},
            "variants": ({"batch": 1}, {"length": 1})}


def attention_sizes(case) -> dict:
    heads = case.choice([1, 3, 5, 8])
    queries = case.choice([2, 5, 8, 11])
    sizes = {**ATTENTION.sizes, "batch": case.choice([2, 4, 5]), "queries": queries, "keys": queries,
             "hidden": heads * case.choice([2, 3, 5]), "heads": heads, "dtype": dtype(case)}
    return {"sizes": sizes, "variants": ({"batch": 1}, {"queries": 1, "keys": 1}),
            "settings": ({}, {"cross": True, "queries": case.choice([1, 4, 10]), "keys": case.choice([2, 3, 12])})}


def stack_sizes(case, layer: bool = False, source: bool = False) -> dict:
    heads = case.choice([1, 3, 4])
    sizes = {"batch": case.choice([2, 3, 4]), "length": case.choice([2, 4, 9, 12]),
             "hidden": heads * case.choice([2, 4]), "heads": heads, "dtype": dtype(case)}
    if not layer:
        sizes.update(layers=case.choice([1, 3]), positional=case.choice(["learned", "sinusoidal"]))
    if source:
        sizes["source"] = case.choice([1, 3, 10])
    return {"sizes": sizes, "variants": ({"batch": 1}, {"length": 1})}


def ssm_sizes(case, function) -> dict:
    """Every size unlike the public tests' (hidden 8, state 4, expand 2, kernel 4): a dt_rank of 2 or 3."""
    sizes = {**function.sizes, "batch": case.choice([2, 3]), "length": case.choice([2, 5, 10]),
             "hidden": case.choice([20, 33, 40]), "state": case.choice([1, 2, 3, 5, 6]),
             "expand": case.choice([1, 3]), "kernel": case.choice([2, 3, 5, 6]), "dtype": dtype(case)}
    return {"sizes": sizes, "variants": ({"batch": 1}, {"length": 1})}


def scan_sizes(case) -> dict:
    sizes = {**PSCAN.sizes, "batch": case.choice([2, 3]), "length": case.choice([3, 19, 100]),
             "expanded": case.choice([1, 5]), "state": case.choice([1, 2, 6]), "dtype": dtype(case)}
    return {"sizes": sizes, "variants": ({"length": 1}, {"length": 3000, "batch": 1, "expanded": 2, "state": 3,
                                          "dtype": "float64"})}


def discretisation_sizes(case) -> dict:
    sizes = {**DISCRETIZE.sizes, "batch": case.choice([2, 3]), "length": case.choice([2, 4, 11]),
             "expanded": case.choice([2, 5]), "state": case.choice([2, 3]), "dtype": dtype(case)}
    return {"sizes": sizes, "variants": ({"batch": 1, "length": 1, "expanded": 1, "state": 1},),
            "settings": ({"alpha": case.choice([0.1, 0.3])}, {"alpha": case.choice([0.6, 0.9])})}


