"""What a model file does that deserves the instructor's look: imports and calls it has no need for. The
sandbox stops what they could do and the grade never depends on them; a flag says that someone tried."""

import ast

from grading.regrade.submissions import MODEL_FILES

# What a model file may import without a flag for the instructor's review (the grade never depends on it).
USUAL_IMPORTS = {"torch", "einops", "math", "functools", "itertools", "typing", "dataclasses", "collections",
                 "numbers", "__future__", "models"}
UNUSUAL_CALLS = {"exec", "eval", "compile", "__import__", "open", "globals", "vars", "breakpoint", "input"}


def review_flags(files: dict[str, bytes]) -> list[str]:
    """Imports and calls a model file has no need for (the sandbox stops what they could do; the flag says
    that someone tried, for the instructor to read the code)."""
    flags = []
    for path in MODEL_FILES:
        if path not in files:
            continue
        try:
            tree = ast.parse(files[path].decode("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] not in USUAL_IMPORTS:
                    flags.append(f"{path}:{node.lineno} imports {name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in UNUSUAL_CALLS:
                flags.append(f"{path}:{node.lineno} calls {node.func.id}()")
            if isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr not in (
                    "__init__", "__name__", "__class__", "__call__"):
                flags.append(f"{path}:{node.lineno} reaches {node.attr}")
    return sorted(set(flags))
