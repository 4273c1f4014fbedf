"""From the complete repository to the student template: stubs, stripped notebooks, what stays behind.

A solution region is the lines from `### BEGIN SOLUTION` to `### END SOLUTION`, inside one function whose
docstring has a line `README: <section>`. In the template it becomes

    # YOUR CODE HERE (the reference solution takes 6 lines)
    raise NotImplementedError("MultiHeadAttention.forward is not written yet: see README section '...'")

at the region's indentation; the def line, the docstring and everything outside regions stay as they are.
Notebooks (`*.ipynb`) are stripped by nbgrader's own preprocessors: solutions, hidden tests, outputs.
"""

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autograde import points

from grading.errors import GradingError

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")

# Never shipped to students, on either branch: the grading tools and their tests, hidden tests,
# instructor documents, and this development repository's own CI.
TOTAL_POINTS = points.total(Path(__file__).resolve().parents[2])  # what the public graded tests are worth

INSTRUCTOR_ONLY = ("grading/", "tests/instructor/", "tests/hidden/", "INSTRUCTOR.md", ".ci/", "requirements-dev.txt",
                   ".github/workflows/regrade-class.yml")
# What no template file may name, in code or prose: the instructor's tools and files, which students never get.
INSTRUCTOR_MENTION = re.compile(r"python -m grading|(?<![\w-])grading[/.]\w[\w./]*|tests/(?:instructor|hidden)\b|"
                                r"INSTRUCTOR\.md|requirements-dev\.txt|(?<![\w.])\.ci/")


# Prose about the markers (module docstrings, the README) says, in the template, what students see there.
PROSE_REWRITES = (
    ("marked with `### BEGIN SOLUTION` / `### END SOLUTION`", "marked `# YOUR CODE HERE`"),
    ("sits between `### BEGIN SOLUTION` and `### END SOLUTION`", "replaces the `# YOUR CODE HERE` stubs"),
)


class TemplateError(GradingError):
    """A solution region the release cannot turn into a stub: said in one line, with file and line."""


def is_instructor_only(path: str) -> bool:
    return any(path == prefix or (prefix.endswith("/") and path.startswith(prefix)) for prefix in INSTRUCTOR_ONLY)


@dataclass(frozen=True)
class Region:
    """One solution region: lines begin..end (0-based, both markers included) of `path`."""

    path: str
    qualname: str
    section: str
    begin: int
    end: int
    indent: str

    def stub(self) -> list[str]:
        return [
            f"{self.indent}# YOUR CODE HERE",
            f'{self.indent}raise NotImplementedError("{self.qualname} is not written yet: '
            f"see README section '{self.section}'\")",
        ]


def _functions(tree: ast.AST):
    """(qualified name, node) of every function, methods as Class.method."""
    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{prefix}{child.name}", child
                yield from visit(child, f"{prefix}{child.name}.<locals>.")

    yield from visit(tree, "")


def find_regions(source: str, path: str) -> list[Region]:
    """The solution regions of a Python file, each checked: balanced, inside one function, documented."""
    lines = source.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    stray = [i for i, line in enumerate(lines)
             if line.strip().startswith("#") and any(m in line for m in MARKERS[:2]) and i not in begins + ends]
    if stray:
        raise TemplateError(f"{path}:{stray[0] + 1}: a solution marker must stand alone on its line")
    if len(begins) != len(ends) or any(not b < e for b, e in zip(begins, ends)) or any(
            e > b2 for e, b2 in zip(ends, begins[1:])):
        raise TemplateError(f"{path}: BEGIN/END SOLUTION lines do not pair up (lines {[b + 1 for b in begins]} "
                            f"and {[e + 1 for e in ends]})")
    functions = list(_functions(ast.parse(source, filename=path)))
    regions = []
    for begin, end in zip(begins, ends):
        # A comment after a function's last statement lies past its end_lineno: the BEGIN line must not.
        enclosing = [(name, node) for name, node in functions if node.lineno - 1 < begin < node.end_lineno]
        if not enclosing:
            raise TemplateError(f"{path}:{begin + 1}: a solution region must lie inside a function")
        name, node = max(enclosing, key=lambda pair: pair[1].lineno)  # the innermost
        match = re.search(r"^\s*README: (.+)$", ast.get_docstring(node) or "", re.M)
        if not match:
            raise TemplateError(f"{path}:{node.lineno}: {name}'s docstring needs a line 'README: <section>' "
                                "naming the README section its stub will point to")
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        if not lines[end].startswith(indent + END):
            raise TemplateError(f"{path}:{end + 1}: END SOLUTION should be indented like its BEGIN SOLUTION")
        regions.append(Region(path, name, match.group(1).strip(), begin, end, indent))
    return regions


def stub_python(source: str, path: str) -> str:
    """The file with every solution region replaced by its stub."""
    lines = source.splitlines()
    for region in reversed(find_regions(source, path)):
        written = sum(1 for line in lines[region.begin + 1:region.end] if line.strip())
        stub = region.stub()
        stub[0] += f" (the reference solution takes {written} line{'s' if written != 1 else ''})"
        lines[region.begin:region.end + 1] = stub
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def strip_notebook(text: str) -> str:
    """A notebook as students get it: nbgrader's ClearSolutions, ClearHiddenTests and ClearOutput."""
    import nbformat
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    notebook = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    resources = {}
    for preprocessor in (ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        notebook, resources = preprocessor.preprocess(notebook, resources)
    return nbformat.writes(notebook)


def make_template(files: dict[str, bytes]) -> dict[str, bytes]:
    """path -> content of the student template, from path -> content of the complete repository."""
    template = {}
    for path, content in files.items():
        if path.endswith(".py") and BEGIN.encode() in content:
            content = stub_python(content.decode("utf-8"), path).encode("utf-8")
        elif path.endswith(".ipynb"):
            content = strip_notebook(content.decode("utf-8")).encode("utf-8")
        if path.endswith((".py", ".md")):
            text = content.decode("utf-8")
            for old, new in PROSE_REWRITES:
                text = text.replace(old, new)
            content = text.encode("utf-8")
        template[path] = content
    return template


# --- what must never reach the template -------------------------------------------------------------------


def _region_lines(lines: list[str], *pairs: tuple[str, str]) -> tuple[list[str], list[str]]:
    """(stripped lines inside any of the (begin, end) marker regions, stripped lines outside them)."""
    inside, outside, open_region = [], [], None
    for line in lines:
        stripped = line.strip()
        if open_region is None and any(stripped == begin for begin, _ in pairs):
            open_region = next(end for begin, end in pairs if stripped == begin)
        elif stripped == open_region:
            open_region = None
        elif stripped:
            (inside if open_region else outside).append(stripped)
    return inside, outside


HIDDEN_TESTS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


def _notebook_secret_lines(text: str) -> tuple[list[str], list[str]]:
    """(solution and hidden-test lines, other lines) of a notebook's cells, and every output line as secret."""
    notebook = json.loads(text)
    inside, outside = [], []
    for cell in notebook.get("cells", []):
        source = "".join(cell.get("source", [])) if isinstance(cell.get("source"), list) else cell.get("source", "")
        lines = source.splitlines()
        solution_cell = cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)
        if solution_cell and not any(line.strip() == BEGIN for line in lines):
            inside += [line.strip() for line in lines if line.strip()]
            continue
        secret, public = _region_lines(lines, (BEGIN, END), HIDDEN_TESTS)
        inside += secret
        outside += public
        for output in cell.get("outputs", []):
            inside += [line.strip() for line in _output_text(output) if line.strip()]
    return inside, outside


def _output_text(output: dict) -> list[str]:
    text = output.get("text", "")
    for value in output.get("data", {}).values():
        text += "\n" + ("".join(value) if isinstance(value, list) else str(value))
    text = "".join(text) if isinstance(text, list) else text
    return text.splitlines()


def secret_lines(files: dict[str, bytes]) -> set[str]:
    """Stripped lines that appear in solution regions (or hidden tests, or notebook outputs) and nowhere
    in the given code outside them: if one shows up anywhere in the template, tests included, a solution
    leaked. (Tests don't count as given code: a test that spells out a solution line gives it away.)"""
    secret, public = set(), set()
    for path, content in files.items():
        if path.endswith(".ipynb"):
            inside, outside = _notebook_secret_lines(content.decode("utf-8"))
        elif path.endswith(".py") and BEGIN.encode() in content:
            lines = content.decode("utf-8").splitlines()
            inside, outside = _region_lines(lines, (BEGIN, END), HIDDEN_TESTS)
        else:
            try:
                outside, inside = content.decode("utf-8").splitlines(), []
            except UnicodeDecodeError:
                continue
            outside = [line.strip() for line in outside]
        secret.update(inside)
        if not path.startswith("tests/"):
            public.update(outside)
    return secret - public


def leaks(path: str, content: bytes, secrets: set[str]) -> list[str]:
    """What in one template file gives a solution away (markers, secret lines, notebook outputs) or points
    at the instructor's tools."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return []
    marker_lines = [line for line in text.splitlines() if line.strip().lstrip("#").strip() in MARKERS
                    or line.strip().lstrip('"').startswith(tuple(f"### {m}" for m in MARKERS))]
    problems = [f"{path}: keeps the marker line {line.strip()!r}" for line in marker_lines[:3]]
    if PurePosixPath(path).suffix == ".ipynb":
        notebook = json.loads(text)
        lines = []
        for number, cell in enumerate(notebook.get("cells", [])):
            source = cell.get("source", "")
            lines += ("".join(source) if isinstance(source, list) else source).splitlines()
            if cell.get("outputs"):
                problems.append(f"{path}: cell {number} still has outputs")
    else:
        lines = text.splitlines()
    found = sorted({line.strip() for line in lines} & secrets)
    problems += [f"{path}: solution line {line!r}" for line in found[:5]]
    named = [(number, match.group(0)) for number, line in enumerate(text.splitlines(), start=1)
             for match in [INSTRUCTOR_MENTION.search(line)] if match]
    problems += [f"{path}:{number}: names {what!r}, which students do not get" for number, what in named[:3]]
    return problems
