"""The README and the code stay in step: the Quickstart, and the sections stubs point to."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODEL_FILES = [ROOT / "models" / "transformer.py", ROOT / "models" / "mamba.py"]


def quickstart_lines():
    section = README.split("\n## Quickstart", 1)[1]
    return re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1).strip().splitlines()


def test_quickstart_is_install_train_test():
    install, train, test = quickstart_lines()  # exactly three lines
    assert "pip install -r requirements.txt" in install
    config = re.search(r"--config (\S+)", train).group(1)
    assert (ROOT / config).is_file(), f"the Quickstart trains on {config}, which does not exist"
    assert "pytest" in test


def test_quickstart_says_venv_and_cpu_torch_before_its_install_line():
    """Read top to bottom: a venv first, then the CPU build of torch (else pip pulls GBs of CUDA), then the lines."""
    before_the_lines = README.split("\n## Quickstart", 1)[1].split("```", 1)[0]
    assert "python3 -m venv" in before_the_lines
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert f"pip install torch=={pinned} --index-url https://download.pytorch.org/whl/cpu" in before_the_lines


def test_requirements_pin_torch_so_ci_never_pulls_cuda_packages():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M)


def functions_students_write(path: Path):
    """(qualified name, docstring) of every function that holds a solution region (the reference) or its
    stub (the student template: `raise NotImplementedError("... is not written yet ...")`)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []

    def students_write(body):
        return any(line.strip() == "### BEGIN SOLUTION" for line in body) or any(
            line.strip().startswith("raise NotImplementedError(") and "is not written yet" in line for line in body)

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef) and students_write(lines[child.lineno - 1: child.end_lineno + 1]):
                found.append((f"{prefix}{child.name}", ast.get_docstring(child) or ""))

    visit(ast.parse(source))
    return found


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.name)
def test_every_function_students_write_names_its_readme_section(path):
    headings = set(re.findall(r"^#+ (.+)$", README, re.M))
    functions = functions_students_write(path)
    assert functions, f"{path.name} has no solution regions or stubs"
    markers = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    assert markers.count("### BEGIN SOLUTION") == markers.count("### END SOLUTION")
    assert markers.count("### BEGIN SOLUTION") in (0, len(functions)), "one solution region per function"
    for name, docstring in functions:
        match = re.search(r"README: (.+)", docstring)
        assert match, f"{name}'s docstring should say which README section explains it ('README: ...')"
        assert match.group(1).strip() in headings, f"{name} points to README section {match.group(1)!r}, which is missing"


# --- the commands and figure slots of the handout ---------------------------------------------------------


def readme_commands(program: str) -> list[str]:
    """Every line of a README code block that runs `program` (comments after `#` dropped)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith(program)]


def test_every_training_command_in_the_readme_builds_a_valid_config():
    import shlex

    from main import parse_train_args
    from training.config import build_config

    commands = [line for line in readme_commands("python main.py")
                if not any(word in line for word in ("translate", "--resume", "--help", "<"))]
    assert len(commands) >= 8, f"the README should list the runs to make; found {commands}"
    for line in commands:
        config_path, resume, overrides = parse_train_args(shlex.split(line)[2:])
        config = build_config(ROOT / config_path if config_path else None, overrides)  # raises ConfigError
        assert (ROOT / config.data).is_file(), f"{line!r} trains on {config.data}, which does not exist"


def test_the_readme_asks_for_hidden_32_and_64_on_both_datasets_for_each_model():
    import shlex

    from main import parse_train_args
    from training.config import build_config

    grid = set()
    for line in readme_commands("python main.py"):
        if "--run_name" in line and "<" not in line:
            config_path, _, overrides = parse_train_args(shlex.split(line)[2:])
            config = build_config(ROOT / config_path, overrides)
            grid.add((config.model, Path(config.data).stem, config.hidden_size, config.run_name))
    for model in ("transformer", "mamba"):
        for data in ("small", "large"):
            for hidden in (32, 64):
                assert (model, f"pig_latin_{data}", hidden, f"{model}_{data}_h{hidden}") in grid, (
                    f"the README should train {model} hidden {hidden} on the {data} set as {model}_{data}_h{hidden}")


def test_the_runs_the_notebooks_read_are_made_by_readme_commands():
    from analysis.runs import LEARNED_POSITIONS, MAMBA, TRANSFORMER

    commands = readme_commands("python main.py")
    for spec in (TRANSFORMER, MAMBA, LEARNED_POSITIONS):
        run_name = Path(spec.default).name
        assert any(f"--run_name {run_name}" in line for line in commands), (
            f"the notebooks read {spec.default}; the README should say how to make it")


def test_every_figure_slot_of_the_writeup_is_a_file_a_command_or_notebook_writes():
    from tests.test_notebooks import NOTEBOOK_ASSETS

    written = set(NOTEBOOK_ASSETS) | {"curves_transformer.png", "curves_mamba.png", "results.md"}
    writeup = README.split("\n## Your writeup", 1)[1]
    slots = re.findall(r"!\[[^\]]*\]\(assets/([^)]+)\)", writeup)
    assert slots, "the writeup template should have figure slots"
    assert set(slots) <= written, f"figure slots no command writes: {set(slots) - written}"
