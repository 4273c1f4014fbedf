"""Runs the mutant corpus (grading/publish/mutants.py): which graded tests catch each mutant, whether every
correct alternative keeps every point, and how often the diagnoses name the right cause.

Each variant is compiled in its module's namespace and put in place of the reference everywhere the
reference function is bound (the class or module, tables such as SCANS, modules that imported it by
name), exactly as if a student had written it; then the graded tests run in this process, in one pytest
session for the whole corpus. The reference runs first, every test; a variant then runs the tests that
call the function it changes. A few mutants (`charged_everywhere`) run every test of their question, which
shows that a mistake in one function costs points only in that function's tests.

    python -m grading mutants                 the project's corpus
    python -m grading mutants --extra FILE    a corpus of your own (see `load_extra`)
"""

import contextlib
import io
import sys
from pathlib import Path

import pytest

from grading.errors import GradingError
from grading.publish.mutants import ALTERNATIVES, HIDDEN, HIDDEN_ONLY_MUTANTS, MUTANTS, QUESTION_FILES, REPO, \
    Variant, _resolve


def is_project_module(module) -> bool:
    """A module of this repository's own code: not a package installed into a virtual environment that
    happens to live inside it (CI's .venv), whose lazy mappings may not even survive being read."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(REPO) and "site-packages" not in path.parts


@contextlib.contextmanager
def substituted(variant: Variant):
    """The variant in place of the reference wherever the reference function is bound, then restored."""
    module, owner, original = _resolve(variant.target)
    namespace = {}
    exec(compile(variant.function_source(), f"<{variant.name}>", "exec"), module.__dict__, namespace)
    (replacement,) = [value for value in namespace.values() if callable(value)]
    replacement.__qualname__ = original.__qualname__
    replacement.__doc__ = original.__doc__
    bindings = [(owner, original.__name__)] if owner is not module else []
    for name, loaded in list(sys.modules.items()):  # `from models.mamba import pscan` and tables like SCANS
        if is_project_module(loaded):
            for key, value in list(vars(loaded).items()):
                if value is original:
                    bindings.append((loaded, key))
                elif type(value) is dict and any(item is original for item in value.values()):
                    bindings += [(value, k) for k, item in value.items() if item is original]
    try:
        _bind(bindings, replacement)
        yield
    finally:
        _bind(bindings, original)


def _bind(bindings: list, value):
    """Puts `value` at every (module or dict, name) of `bindings`."""
    for where, key in bindings:
        if isinstance(where, dict):
            where[key] = value
        else:
            setattr(where, key, value)


def probe_name(target: str) -> str:
    """"models.mamba:pscan" -> "mamba:pscan", as the probe names the functions its calls run."""
    return target.removeprefix("models.")


class _VariantLoop:
    """A pytest plugin that collects the graded tests once, then runs them once per job (a variant in
    place, or the reference for None), instead of pytest's single pass: one session for the corpus."""

    def __init__(self, jobs):
        self.jobs, self.results = jobs, []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        from autograde.harness import TARGETS_RUN

        files = {str(path) for paths in QUESTION_FILES.values() for path in paths}
        everything = [item for item in session.items if str(item.fspath) in files]
        for variant, everywhere in self.jobs:
            if variant is None:
                items = everything
            elif everywhere:
                question = set(map(str, QUESTION_FILES[variant.target.split(":")[0]]))
                items = [item for item in everything if str(item.fspath) in question]
            else:
                items = [item for item in everything if probe_name(variant.target) in TARGETS_RUN.get(_name(item), ())]
            with substituted(variant) if variant else contextlib.nullcontext():
                self.results.append(_run_items(items))
        return True


def _name(item) -> str:
    return getattr(item, "originalname", None) or item.name


def _run_items(items) -> dict:
    from _pytest.runner import runtestprotocol

    from autograde.harness import TARGETS_RUN

    rows = {}
    for index, item in enumerate(items):
        reports = runtestprotocol(item, nextitem=items[index + 1] if index + 1 < len(items) else None, log=False)
        failed = [report for report in reports if report.failed]
        name = _name(item)
        row = rows.setdefault(name, {"name": name, "points": float(item.get_closest_marker("points").args[0]),
                                     "hidden": Path(str(item.fspath)).parent == HIDDEN,
                                     "outcome": "passed", "message": "", "diagnoses": []})
        if failed and row["outcome"] == "passed":
            row["outcome"], row["message"] = "failed", str(failed[0].longrepr)
            row["diagnoses"] = [tuple(pair) for key, value in failed[0].user_properties if key == "diagnoses"
                                for pair in value]
    tests = [{**row, "earned": row["points"] if row["outcome"] == "passed" else 0.0,
              "targets": sorted(TARGETS_RUN.get(row["name"], ()))} for row in rows.values()]
    public = [row for row in tests if not row["hidden"]]
    hidden = [row for row in tests if row["hidden"]]
    return {"tests": tests, "lost": sum(row["points"] - row["earned"] for row in public),
            "hidden_lost": sum(row["points"] - row["earned"] for row in hidden),
            "max": sum(row["points"] for row in public), "hidden_max": sum(row["points"] for row in hidden)}


def run_variants(jobs: list) -> list[dict]:
    """Graded results (public and hidden) for each job (variant, everywhere), all in one pytest session in
    this process; `everywhere`: every test of the variant's question, else only the tests that run the
    function it changes. The reference runs first, every test: it imports the test modules, which must bind
    the reference functions (a module first imported while a variant is in place would keep the variant
    after it is restored), and it must earn every point."""
    import torch

    loop = _VariantLoop([(None, True), *jobs])
    files = [str(path) for paths in QUESTION_FILES.values() for path in paths]
    args = [*files, "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore", "-q"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tests' tensors are tiny: a second thread only waits for the first
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main(args, plugins=[loop])
    finally:
        torch.set_num_threads(threads)
    reference, *results = loop.results
    if len(loop.results) != len(jobs) + 1 or reference["lost"] or reference["hidden_lost"]:
        raise GradingError(f"the reference itself loses {reference['lost']:g} public and "
                           f"{reference['hidden_lost']:g} hidden points")
    for result in results:
        result["max"], result["hidden_max"] = reference["max"], reference["hidden_max"]
    return results


def charged_everywhere() -> set:
    """The mutants that run every test of their question: the first of each function."""
    first = {}
    for variant in MUTANTS:
        first.setdefault(variant.target, variant.name)
    return set(first.values())


def corpus_jobs() -> list:
    """(variant, everywhere) for every mutant, hidden-only mutant and alternative."""
    everywhere = charged_everywhere()
    return [(variant, variant.name in everywhere) for variant in MUTANTS + HIDDEN_ONLY_MUTANTS + ALTERNATIVES]


def diagnosis_figures(results: dict, mutants: list = None) -> dict:
    """Over the mutants (name -> result): how many diagnoses were given and how many named a cause the
    mutant has (precision), and how many mutants got at least one right diagnosis (coverage), by rule."""
    rules, covered = {}, 0
    mutants = MUTANTS + HIDDEN_ONLY_MUTANTS if mutants is None else mutants
    for variant in mutants:
        right_here = False
        for row in results[variant.name]["tests"]:
            for rule, cause in row["diagnoses"]:
                counts = rules.setdefault(rule.split(":")[0], {"fired": 0, "right": 0})
                counts["fired"] += 1
                counts["right"] += cause in variant.causes
                right_here |= cause in variant.causes
        covered += right_here
    fired = sum(counts["fired"] for counts in rules.values())
    right = sum(counts["right"] for counts in rules.values())
    return {"mutants": len(mutants), "covered": covered, "fired": fired, "right": right, "rules": rules}


class CorpusError(GradingError):
    """A corpus file that cannot be read: said in one line."""


def causes(kind) -> tuple:
    """A corpus entry's kind, one cause or a list of them, as a Variant's causes."""
    return tuple(kind) if isinstance(kind, (list, tuple)) else (kind,)


def load_extra(path: Path) -> tuple[list, list]:
    """(wrong, correct) Variants from a corpus file of your own: a Python file whose lists WRONG and CORRECT
    hold dicts {"name", "target" ("models.mamba:pscan"), "why", "kind", "source" (the whole function)}. A
    wrong one's kind is its cause, or a list of its causes, for the diagnoses' figures (autograde/diagnoses.py's
    words, or any other)."""
    import runpy

    try:
        data = runpy.run_path(str(path))
    except Exception as error:  # the instructor's own file: one line, whatever is wrong with it
        raise CorpusError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    lists = []
    for key in ("WRONG", "CORRECT"):
        entries = data.get(key)
        if not isinstance(entries, list) or not all(isinstance(entry, dict) and {"name", "target", "source"} <=
                                                    set(entry) for entry in entries):
            raise CorpusError(f"{path}: {key} must be a list of dicts with name, target and source")
        variants = [Variant(entry["name"], entry["target"], entry.get("why", ""), (), entry["source"],
                            causes(entry.get("kind", "other")) if key == "WRONG" else ()) for entry in entries]
        for variant in variants:
            try:
                _resolve(variant.target)
                compile(variant.function_source(), variant.name, "exec")
            except Exception as error:
                raise CorpusError(f"{path}: {variant.name}: {type(error).__name__}: {error}") from None
        lists.append(variants)
    return lists[0], lists[1]


def run_corpus(verbose: bool = True, extra: tuple = None, report: Path = None) -> int:
    """Every mutant must lose public points, every hidden-only mutant keep them and lose hidden ones, every
    alternative keep all of them; prints a table and the diagnoses' figures. Exit status. `extra`: a corpus of
    (wrong, correct) variants to run instead of the project's (load_extra); `report`: a JSON file of everything."""
    failures = 0
    mutants, alternatives = extra if extra else (MUTANTS, ALTERNATIVES)
    jobs = corpus_jobs() if not extra else [(variant, False) for variant in mutants + alternatives]
    results = {}
    for (variant, _), result in zip(jobs, run_variants(jobs)):
        results[variant.name] = result
        caught = [("hidden:" if row["hidden"] else "") + row["name"] for row in result["tests"]
                  if row["outcome"] != "passed"]
        lost, hidden_lost = result["lost"], result["hidden_lost"]
        if variant in alternatives:
            verdict = "WRONGLY FAILED" if caught else "kept all"
        elif variant in HIDDEN_ONLY_MUTANTS:
            verdict = "caught" if hidden_lost and not lost else "MISSED" if not hidden_lost else "PUBLIC SEES IT"
        else:  # the project's mutants lose public points; a corpus of your own may lose hidden ones only
            verdict = "caught" if lost or (extra and hidden_lost) else "MISSED"
        failures += verdict not in ("caught", "kept all")
        if verbose:
            print(f"{verdict:14}  {variant.name:44} -{lost:g} public -{hidden_lost:g} hidden  {', '.join(caught)}")
    figures = diagnosis_figures(results, mutants + (HIDDEN_ONLY_MUTANTS if not extra else []))
    if report is not None:  # every variant's rows, messages and diagnoses, for reading them all
        import json

        described = {variant.name: {"target": variant.target, "why": variant.why, "causes": list(variant.causes),
                                    "correct": variant in alternatives, **results[variant.name]}
                     for variant, _ in jobs}
        report.write_text(json.dumps(described, indent=1) + "\n")
    wrong = figures["fired"] - figures["right"]
    failures += wrong
    if verbose:
        print(f"diagnoses: {figures['right']} of {figures['fired']} name a cause the mutant has "
              f"({wrong} wrong); {figures['covered']} of {figures['mutants']} mutants get a right one")
        for rule, counts in sorted(figures["rules"].items()):
            print(f"  {rule:12} {counts['right']:4} of {counts['fired']:4} right")
    return 1 if failures else 0
