"""What the graded tests are worth, read from their markers: `@pytest.mark.points(n, readme=...)` on each
test function of a test folder: tests/graded (the public tests, PUBLIC), and the course staff's hidden tests
beside it. Every total in the project comes from here, so that changing a marker changes every total with
it. The files are parsed, never run."""

import ast
from pathlib import Path

PUBLIC = "tests/graded"


def markers(folder: Path) -> list[tuple[str, str, float, str]]:
    """(file stem, test name, points, README section) of every marked test function in `folder`."""
    found = []
    for path in sorted(Path(folder).glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _constants(tree)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func).endswith("mark.points"):
                    readme = next((keyword.value for keyword in decorator.keywords if keyword.arg == "readme"), None)
                    found.append((path.stem, node.name, float(ast.literal_eval(decorator.args[0])),
                                  _text(readme, names)))
    return found


def _constants(tree: ast.Module) -> dict:
    """The module's top-level string constants: NAME = "..." and A, B = "...", "..."."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            targets, values = node.targets[0], node.value
            pairs = zip(targets.elts, values.elts) if isinstance(targets, ast.Tuple) and isinstance(values, ast.Tuple) \
                else [(targets, values)]
            names.update({target.id: value.value for target, value in pairs if isinstance(target, ast.Name)
                          and isinstance(value, ast.Constant) and isinstance(value.value, str)})
    return names


def _text(node, names: dict) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return names.get(node.id, "")
    return ""


def total(root: Path, folder: str = PUBLIC) -> float:
    """The points of the graded tests in root/folder (the public ones: what a grade is out of)."""
    return sum(points for _, _, points, _ in markers(Path(root) / folder))
