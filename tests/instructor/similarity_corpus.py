"""The test corpus the similarity report's defaults are chosen from (grading/course/similarity.py).

Copies, which must be flagged: for each student function, a submission holding one of its correct
alternatives (grading/publish/mutants.py's ALTERNATIVES: code that is not the reference, so a student's own)
and another holding a copy of it disguised two ways: every local name renamed, and every pair of
neighbouring statements that do not depend on each other swapped. The two submissions are otherwise
different (the reference on one side, the template's stubs on the other), which the report removes.

Independent solutions, which must not be flagged: one submission per correct alternative, each compared
with every other and with the reference: different ways to write the same function.

    python tests/instructor/similarity_corpus.py     prints every pair's figures and the range of defaults
                                                     that separates the copies from the independent solutions

tests/instructor/test_similarity.py checks that the defaults do.
"""

import ast
import itertools
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from grading.course import similarity  # noqa: E402
from grading.publish.mutants import ALTERNATIVES  # noqa: E402
from grading.publish.template import find_regions, stub_python  # noqa: E402
from semester import with_function  # noqa: E402

MODEL_FILES = ("models/transformer.py", "models/mamba.py")


def reference(path: str) -> str:
    return (ROOT / path).read_text()


def path_of(target: str) -> str:
    return target.split(":")[0].replace(".", "/") + ".py"


def local_names(function: ast.FunctionDef) -> set[str]:
    """The names the function's body binds (not its parameters, attributes or globals)."""
    bound = {node.id for node in ast.walk(function) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    return bound - {argument.arg for argument in function.args.args}


def renamed(function_source: str) -> str:
    """The function with every local name renamed (a copier's first disguise)."""
    function = ast.parse(textwrap.dedent(function_source)).body[0]
    names = {name: f"my_{name.lower()}_{index}" for index, name in enumerate(sorted(local_names(function)))}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]
    return ast.unparse(function)


def reads_and_writes(statement: ast.stmt) -> tuple[set, set]:
    names = [node for node in ast.walk(statement) if isinstance(node, ast.Name)]
    return ({node.id for node in names if isinstance(node.ctx, ast.Load)},
            {node.id for node in names if not isinstance(node.ctx, ast.Load)})


def independent(first: ast.stmt, second: ast.stmt) -> bool:
    """Whether the two statements may run in either order: plain assignments, neither touching what the
    other binds."""
    if not all(isinstance(statement, (ast.Assign, ast.AnnAssign)) for statement in (first, second)):
        return False
    (reads_a, writes_a), (reads_b, writes_b) = reads_and_writes(first), reads_and_writes(second)
    return not (writes_a & (reads_b | writes_b) or writes_b & reads_a)


def reordered(function_source: str) -> str:
    """The function with each pair of neighbouring independent statements swapped (a copier's second
    disguise), and its local names renamed; the same function if nothing can move."""
    function = ast.parse(renamed(function_source)).body[0]
    body, index = function.body, 0
    while index + 1 < len(body):
        if independent(body[index], body[index + 1]):
            body[index], body[index + 1] = body[index + 1], body[index]
            index += 2
        else:
            index += 1
    return ast.unparse(function)


def submission(changes: dict[str, str], rest: str) -> dict[str, str]:
    """Model files (path -> text): `rest` ("reference" or "stubs") everywhere, and each function of
    `changes` (target -> its def) in place of its solution region."""
    files = {}
    for path in MODEL_FILES:
        text = reference(path)
        for target, function_source in changes.items():
            if path_of(target) == path:
                text = with_function(text, path, target.split(":")[1], function_source)
        files[path] = text if rest == "reference" else stub_others(text, path, changes)
    return files


def stub_others(text: str, path: str, changes: dict[str, str]) -> str:
    """The module with every solution region a stub except the changed functions'."""
    kept = {target.split(":")[1] for target in changes if path_of(target) == path}
    lines = text.splitlines()
    for region in sorted(find_regions(text, path), key=lambda region: -region.begin):
        if region.qualname not in kept:
            lines[region.begin:region.end + 1] = region.stub()
    return "\n".join(lines) + "\n"


def boilerplate(k: int = similarity.NOISE) -> set:
    """What the report removes: the template's and the reference's fingerprints."""
    texts = [(path, reference(path)) for path in MODEL_FILES]
    return similarity.boilerplate_hashes(texts + [(path, stub_python(text, path)) for path, text in texts], k)


# Alternatives that are the reference's code with one more parameter (they test the stand-ins, not style): not
# independent solutions, so no pair of theirs has to stay unflagged.
NEAR_REFERENCE = {"positions-with-a-base-parameter", "encoder-layer-with-an-extra-keyword"}


def corpus() -> tuple[dict[str, dict], list[tuple[str, str]], list[tuple[str, str]]]:
    """(submissions: name -> model files, pairs that must be flagged, pairs that must not)."""
    texts, copies = {"reference": submission({}, "reference")}, []
    first = {}
    alternatives = [variant for variant in ALTERNATIVES if variant.name not in NEAR_REFERENCE]
    for variant in alternatives:
        texts[variant.name] = submission({variant.target: variant.function_source()}, "reference")
        first.setdefault(variant.target, variant)
    for target, variant in first.items():
        for disguise in (renamed, reordered):
            copy = disguise(variant.function_source())
            if disguise is reordered and copy == renamed(variant.function_source()):
                continue  # nothing in it can move
            name = f"{variant.name} {disguise.__name__}"
            texts[name] = submission({target: copy}, "stubs")
            copies.append((variant.name, name))
    independent_pairs = list(itertools.combinations(["reference", *(variant.name for variant in alternatives)], 2))
    return texts, copies, independent_pairs


def figures(threshold: float = similarity.THRESHOLD, min_shared: int = similarity.MIN_SHARED,
            k: int = similarity.NOISE) -> tuple[dict, list, list]:
    """Every pair of the corpus analysed: (pairs by names, copies, independent pairs)."""
    texts, copies, independent_pairs = corpus()
    pairs = {(pair.a, pair.b): pair for pair in similarity.analyse(texts, boilerplate(k), threshold, min_shared, k)}

    def find(a, b):
        return pairs.get((a, b)) or pairs[b, a]

    return {pair: find(*pair) for pair in copies + independent_pairs}, copies, independent_pairs


def main():
    found, copies, independent_pairs = figures()
    print(f"{len(copies)} copies, which must be flagged:")
    for pair in copies:
        row = found[pair]
        print(f"  {pair[1]:55s} similarity {row.similarity:.2f}, shared {row.shared:3d} of own {row.own_a}/{row.own_b}")
    alike = sorted((found[pair] for pair in independent_pairs), key=lambda row: -row.similarity)
    print(f"{len(independent_pairs)} pairs of independent solutions, which must not be flagged; the most alike:")
    for row in alike[:8]:
        print(f"  {row.a} / {row.b}: similarity {row.similarity:.2f}, shared {row.shared} of own "
              f"{row.own_a}/{row.own_b}")
    print(f"with --noise {similarity.NOISE}: the copies' similarity is at least "
          f"{min(found[pair].similarity for pair in copies):.2f} and they share at least "
          f"{min(found[pair].shared for pair in copies)} characters of tokens; independent solutions reach "
          f"{alike[0].similarity:.2f}; the defaults --threshold {similarity.THRESHOLD} --min-shared "
          f"{similarity.MIN_SHARED} flag {sum(found[pair].flagged for pair in copies)} of the {len(copies)} copies "
          f"and {sum(found[pair].flagged for pair in independent_pairs)} of the independent pairs")


if __name__ == "__main__":
    main()
