"""What a model file does that deserves the instructor's look: imports and calls it has no need for. The
sandbox stops what they could do and the grade never depends on them; a flag says that someone tried.

A module need not be imported to be reached: `torch.sys`, `torch.os` or `np.os` are the interpreter's own
modules seen through another one, and `getattr(torch, "o" + "s")` names one that no import or attribute in
the source shows. So besides imports and calls, every attribute with such a module's name is flagged, and
so is every getattr whose name is built at run time; the tests' own package (autograde) is flagged by name
wherever it appears, as an import, a relative import out of models/, or a string.
"""

import ast
import re

from grading.regrade.submissions import MODEL_FILES

# What a model file may import without a flag for the instructor's review (the grade never depends on it).
USUAL_IMPORTS = {"torch", "einops", "numpy", "math", "functools", "itertools", "typing", "dataclasses",
                 "collections", "numbers", "__future__", "models"}
UNUSUAL_CALLS = {"exec", "eval", "compile", "__import__", "open", "globals", "vars", "breakpoint", "input"}
# The interpreter's modules that reach files, processes, memory or other objects: by any attribute of this
# name (torch.os, numpy.sys, einops.…) or any getattr that names one.
REACHING_MODULES = {"sys", "os", "posix", "inspect", "builtins", "importlib", "subprocess", "ctypes", "gc",
                    "socket", "shutil", "pickle", "marshal"}
ATTRIBUTE_CALLS = {"getattr", "setattr", "delattr", "hasattr"}
ORDINARY_DUNDERS = {"__init__", "__name__", "__class__", "__call__"}
TESTS_PACKAGE = "autograde"
NAMES_TESTS_PACKAGE = re.compile(rf"(?<![\w]){TESTS_PACKAGE}(?![\w])")  # "autograder" is a word, not it


def shown(node: ast.AST, limit: int = 60) -> str:
    """The source of an expression, cut for a one-line flag."""
    text = ast.unparse(node)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def import_flags(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
        names = [node.module or ""]
    elif isinstance(node, ast.ImportFrom) and node.level > 1:  # `from ..autograde import oracles`
        return [f"imports {'.' * node.level}{node.module or ''} from outside models/"]
    else:
        return []
    return [f"imports {name}" for name in names if name.split(".")[0] not in USUAL_IMPORTS]


def attribute_call_flags(node: ast.Call) -> list[str]:
    """getattr(x, name) and its kin: flagged when the name is built at run time or names a reaching module."""
    if not (isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_CALLS and len(node.args) >= 2):
        return []
    name = node.args[1]
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        return [f"calls {node.func.id}() with a name built at run time: {shown(name)}"]
    if name.value in REACHING_MODULES:
        return [f"reaches {name.value} through {node.func.id}()"]
    if name.value.startswith("__") and name.value not in ORDINARY_DUNDERS:
        return [f"reaches {name.value} through {node.func.id}()"]
    return []


def node_flags(node: ast.AST) -> list[str]:
    flags = import_flags(node)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id in UNUSUAL_CALLS:
            flags.append(f"calls {node.func.id}()")
        flags += attribute_call_flags(node)
    elif isinstance(node, ast.Attribute):
        if node.attr in REACHING_MODULES:
            flags.append(f"reaches {node.attr} through {shown(node)}")
        elif node.attr.startswith("__") and node.attr not in ORDINARY_DUNDERS:
            flags.append(f"reaches {node.attr}")
    elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id not in ORDINARY_DUNDERS:
        flags.append(f"reaches {node.id}")
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and NAMES_TESTS_PACKAGE.search(node.value):
        flags.append(f"names the {TESTS_PACKAGE} package (the tests' own code) in a string")
    return flags


def review_flags(files: dict[str, bytes]) -> list[str]:
    """Imports, calls and attributes a model file has no need for (the sandbox stops what they could do;
    the flag says that someone tried, for the instructor to read the code)."""
    flags = []
    for path in MODEL_FILES:
        if path not in files:
            continue
        try:
            tree = ast.parse(files[path].decode("utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            flags += [f"{path}:{node.lineno} {flag}" for flag in node_flags(node)]
    return sorted(set(flags))
