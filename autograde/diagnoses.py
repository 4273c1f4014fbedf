"""The likely cause of a failure, said only where a rule is sure.

A failure message always says what differs: on which inputs, where, by how much. It adds a *likely cause*
only when one of the rules below fires, and every rule is tested against the course staff's corpus of
mistakes, each labelled with its cause: a rule may fire only on mistakes of its cause. A wrong diagnosis
costs a student more than none, so a rule that cannot be sure stays silent.

Each rule reads the checks a test made (`Checked`): which facet of the function each looked at (its
values, its gradients, training mode, a second call, ...), whether it passed, and the tensors compared.
"""

from collections import Counter
from dataclasses import dataclass, field

import torch

# What each facet of a function is, in the words of a message.
FACETS = {
    "value": "the values",
    "variant": "other sizes and settings",
    "row": "each row of a batch alone",
    "repeat": "the first call's sizes again, after the others",
    "promise": "the type and dtype",
    "gradient": "the gradients",
    "train": "training mode without dropout",
    "dropout": "training mode with dropout",
    "causal": "causality",
    "property": "the property tested",
}
VALUES = ("value", "variant", "row", "repeat")


@dataclass
class Checked:
    """One expectation, checked: whether it held, and what a rule needs to know about it."""

    passed: bool
    message: str
    facet: str
    where: dict
    actual: object = None
    expected: object = None
    alternatives: dict = field(default_factory=dict)  # label -> (cause, tensor a mistake of that cause gives)
    whole: bool = False  # a problem that is the whole story (a stub)
    raised: bool = False  # no value to compare: the call raised, timed out, or returned no tensor
    proves: str = None  # a cause the failed check itself establishes (see Case.expect)
    atol: float = 0.0
    rtol: float = 0.0


@dataclass(frozen=True)
class Finding:
    name: str  # the rule's name
    cause: str  # the cause it names, as the mutants are labelled
    says: str  # what the student reads after "likely cause:"


def _tensors(item: Checked) -> bool:
    return isinstance(item.actual, torch.Tensor) and isinstance(item.expected, torch.Tensor) and \
        not item.actual.is_complex() and not item.expected.is_complex()


def _near(actual: torch.Tensor, other: torch.Tensor, item: Checked) -> bool:
    """Equal within ten times the check's own tolerance."""
    if actual.shape != other.shape or other.is_complex():
        return False
    atol, rtol = max(item.atol, 1e-6) * 10, max(item.rtol, 1e-5) * 10
    actual, other = actual.detach().double(), other.detach().double()
    return bool(torch.isfinite(actual).all()) and bool(((actual - other).abs() <= atol + rtol * other.abs()).all())


def _failed(checked, facets=None):
    return [item for item in checked if not item.passed and (facets is None or item.facet in facets)]


# --- the rules: each returns its findings for a test's checks -----------------------------------------------


def _explains_every_failure(checked, applies, explains) -> bool:
    """A structural explanation must explain every failure it applies to, and apply to one: a mask that
    happens to equal the wrong-side mask for one row, say, proves nothing while its other failures differ.
    Failures within ten times the tolerance (rounding, a dtype) are no structural mistake at all."""
    failures = [item for item in _failed(checked, VALUES + ("train",))
                if _tensors(item) and item.actual.shape == item.expected.shape and
                not _near(item.actual, item.expected, item)]
    relevant = [item for item in failures if applies(item)]
    return bool(relevant) and all(explains(item) for item in relevant)


def transposed(checked):
    if _explains_every_failure(checked, lambda item: item.actual.dim() >= 2 and
                               item.actual.shape[-1] == item.actual.shape[-2],
                               lambda item: _near(item.actual.transpose(-1, -2), item.expected, item)):
        return [Finding("transposed", "transposed", "the result is the expected one transposed (its last two axes "
                                                    "swapped)")]
    return []


def sign(checked):
    if _explains_every_failure(checked, lambda item: bool((item.expected < 0).any()),
                               lambda item: _near(item.actual, item.expected.abs(), item)):
        return [Finding("sign", "sign", "it is right where the expected values are positive and has the opposite "
                                        "sign where they are negative: a sign is lost (an absolute value, or the "
                                        "logarithm of a negative number taken as a real one)")]
    return []


def alternative(checked):
    labels = dict.fromkeys(label for item in checked for label in item.alternatives)
    for label in labels:
        def applies(item, label=label):
            return label in item.alternatives and not _near(item.alternatives[label][1], item.expected, item)

        def explains(item, label=label):
            return _near(item.actual, item.alternatives[label][1], item)

        if _explains_every_failure(checked, applies, explains):
            cause = next(item.alternatives[label][0] for item in checked if label in item.alternatives)
            return [Finding(f"alternative:{cause}", cause, f"it matches what {label} would give")]
    return []


def _right_then_wrong(checked, right: tuple, wrong: str) -> bool:
    """Every check of the facets `right` held (and there was one), and a check of facet `wrong` compared a
    value and failed (a call that raised is its own story: its message says what it raised)."""
    held = [item for item in checked if item.facet in right]
    return bool(held) and all(item.passed for item in held) and \
        any(not item.raised for item in _failed(checked, (wrong,)))


def gradient(checked):
    if _right_then_wrong(checked, VALUES + ("train",), "gradient"):
        return [Finding("gradient", "gradient",
                        "the values are right and the gradients are not: an input does not reach the output the way "
                        "its values suggest (an argument used where another one with the same values here belongs, "
                        "torch.no_grad(), .detach(), .item() or .data, a tensor rebuilt from numbers, or a "
                        "torch.where whose unused branch is not finite)")]
    return []


def training(checked):
    if _right_then_wrong(checked, VALUES, "train"):
        return [Finding("training", "training",
                        "it is right in eval mode and wrong in training mode with dropout 0: code that runs only "
                        "when self.training is true changes the result")]
    return []


def dropout(checked):
    if _right_then_wrong(checked, VALUES + ("train",), "dropout"):
        return [Finding("dropout", "dropout",
                        "it is right without dropout and wrong with it: dropout is applied where the README does "
                        "not put it, or not where it does")]
    return []


def batch(checked):
    """Each row alone right, the batch wrong, and the batch's row differing from the same row computed alone:
    the rows of a batch affect each other (a rounding difference in a larger tensor proves nothing)."""
    rows = [item for item in checked if item.facet == "row"]
    whole = [item for item in _failed(checked, ("value",)) if item.where.get("setting") == 0 and _tensors(item)]
    if not rows or not all(item.passed for item in rows) or not whole:
        return []
    for row in rows:
        for item in whole:
            if _tensors(row) and item.actual.shape[1:] == row.actual.shape[1:] and item.actual.shape[0] > 1 and \
                    not _near(item.actual[-1:], row.actual, row):
                return [Finding("batch", "batch", "each row of the batch alone is right, and the same rows in one "
                                                  "batch are not: the rows of a batch affect each other's results")]
    return []


def causal(checked):
    """A later position changed an earlier output; not said when the rows of a batch affect each other, since a
    row's later positions then reach the next row's earlier ones."""
    if batch(checked):
        return []
    for item in _failed(checked, ("causal",)):
        if item.proves == "causal":
            return [Finding("causal", "causal", "outputs at earlier positions change when only later inputs change: "
                                                "the function sees the future")]
    return []


def overflow(checked):
    lengths_right = [item.where["length"] for item in checked
                     if item.passed and item.facet in VALUES and "length" in item.where]
    for item in _failed(checked, VALUES):
        length = item.where.get("length")
        if _tensors(item) and length is not None and lengths_right and max(lengths_right) < length and \
                not torch.isfinite(item.actual).all() and torch.isfinite(item.expected).all():
            return [Finding("overflow", "overflow", "it is right for shorter sequences and not finite for a longer "
                                                    "one: something overflows as the length grows (exp of a "
                                                    "large number?)")]
    return []


RULES = (causal, batch, gradient, training, dropout, overflow, transposed, sign, alternative)


def diagnose(checked: list) -> list:
    """The findings of every rule that is sure, at most two (the most specific first)."""
    found = []
    for rule in RULES:
        for finding in rule(checked):
            if finding.cause not in {other.cause for other in found}:
                found.append(finding)
    return found[:2]


def summary(checked: list) -> list:
    """What else failed and what was right, by facet: facts, for the lines under the first failure."""
    first = next((item for item in checked if not item.passed), None)
    failed = Counter(item.facet for item in checked if not item.passed and item is not first)
    wrong_facets = {item.facet for item in checked if not item.passed}
    right = Counter(item.facet for item in checked if item.passed and item.facet not in wrong_facets)
    lines = []
    if failed:
        lines.append("also wrong: " + ", ".join(f"{FACETS.get(facet, facet)} ({count})"
                                                for facet, count in failed.items()))
    if right:
        lines.append("right: " + ", ".join(FACETS.get(facet, facet) for facet in right))
    if first is not None and _tensors(first) and first.actual.shape != first.expected.shape:
        before = checked[:next(index for index, item in enumerate(checked) if item is first)]
        asked = [tuple(item.expected.shape) for item in before if _tensors(item)]
        if tuple(first.actual.shape) in asked:
            lines.append(f"note: shape {tuple(first.actual.shape)} is what an earlier call of this test asked for")
    return lines
