"""The README and the code stay in step: the Quickstart CI runs, the sections code and tests point to, and
every link of the handout, the instructor's guide and the reports in docs/."""

import ast
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODEL_FILES = [ROOT / "models" / "transformer.py", ROOT / "models" / "mamba.py"]
MAX_HANDOUT_LINES = 600  # the assignment, not the lab's reports: those live in docs/


def quickstart_lines():
    section = README.split("\n## Quickstart", 1)[1]
    return re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1).strip().splitlines()


def test_quickstart_block_is_the_whole_linux_path_in_order():
    """A student copies the block line by line: a venv, the CPU build of torch (else pip pulls GBs of CUDA),
    the requirements, one training run, the tests. Nothing they need may hide in the prose around it."""
    venv, activate, torch_line, install, train, test = quickstart_lines()
    assert venv == "python3 -m venv .venv" and activate == "source .venv/bin/activate"
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert torch_line == f"python -m pip install torch=={pinned} --index-url https://download.pytorch.org/whl/cpu"
    assert install == "python -m pip install -r requirements.txt"
    config = re.search(r"--config (\S+)", train).group(1)
    assert (ROOT / config).is_file(), f"the Quickstart trains on {config}, which does not exist"
    assert test == "python -m pytest"


def test_the_quickstart_trains_the_run_the_notebooks_read_first():
    from analysis.runs import TRANSFORMER

    train = quickstart_lines()[4]
    assert train == TRANSFORMER.command, "the notebooks' Transformer should be the Quickstart's run"
    assert TRANSFORMER.default == "runs/" + re.search(r"--run_name (\S+)", train).group(1)


def test_requirements_pin_torch_so_ci_never_pulls_cuda_packages():
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M)


def test_the_handout_is_the_assignment_at_most_600_lines():
    lines = len(README.splitlines())
    assert lines <= MAX_HANDOUT_LINES, (
        f"README.md has {lines} lines: move measured reports to docs/ and keep the handout to the assignment")


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
    headings = set(headings_of(README))
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


# --- sections and links --------------------------------------------------------------------------------------

MARKDOWN = MarkdownIt("commonmark").enable("table")


def headings_of(text: str) -> list[str]:
    """Every heading of a Markdown page as a reader sees it (code spans and emphasis as plain text)."""
    tokens = MARKDOWN.parse(text)
    return ["".join(child.content for child in tokens[i + 1].children)
            for i, token in enumerate(tokens) if token.type == "heading_open"]


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to dashes, and
    -1, -2, ... after a repeated one."""
    anchors, seen = set(), {}
    for heading in headings_of(text):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def links_of(text: str) -> list[str]:
    """The target of every link and image of a Markdown page (none of those in code)."""
    found = []
    def walk(tokens):
        for token in tokens:
            if token.type == "link_open":
                found.append(token.attrs["href"])
            elif token.type == "image":
                found.append(token.attrs["src"])
            walk(token.children or [])
    walk(MARKDOWN.parse(text))
    return found


PAGES = [*sorted(ROOT.glob("*.md")), *sorted((ROOT / "docs").glob("*.md"))]  # the guide too, where it is
# The writeup's figures are the student's to make (submit_check reports those still missing).
WRITEUP_FIGURES = set(re.findall(r"!\[[^\]]*\]\((assets/[^)]+)\)", README.split("\n## Your writeup", 1)[1]))


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_of_the_page_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in links_of(page.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or (page.name == "README.md" and target in WRITEUP_FIGURES):
            continue  # another site, or a figure still to be made
        path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not path.exists():
            broken.append(f"{target} (no {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        elif parts.fragment and path.suffix == ".md" and (
                unquote(parts.fragment) not in github_anchors(path.read_text(encoding="utf-8"))):
            broken.append(f"{target} (no heading with that anchor in {path.name})")
    assert broken == [], f"{page.name}: broken links: {broken}"


def test_the_link_check_reads_anchors_as_github_makes_them():
    page = "# Runs: what `main.py` writes\n\n## Q2.1 Discretisation\n\n## Notes\n\n## Notes\n"
    assert github_anchors(page) == {"runs-what-mainpy-writes", "q21-discretisation", "notes", "notes-1"}
    assert links_of("[a](#x) `[b](#y)` ![c](d.png)\n\n```\n[e](#z)\n```\n") == ["#x", "d.png"]


def source_files() -> list[Path]:
    """The repository's Python code: its top-level scripts, its packages and the tests (never a virtual
    environment that a student made inside the repository)."""
    folders = [folder for folder in sorted(ROOT.iterdir())
               if (folder / "__init__.py").is_file() or folder.name == "tests"]
    return sorted(ROOT.glob("*.py")) + [path for folder in folders for path in sorted(folder.rglob("*.py"))]


def docstring_sections() -> dict[str, str]:
    """`README: <section>` lines of every docstring in the repository's Python code -> where they are."""
    found = {}
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for section in re.findall(r"^\s*README: (.+)$", ast.get_docstring(node) or "", re.M):
                    found.setdefault(section.strip(), f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}")
    return found


def test_every_readme_section_a_docstring_names_exists():
    headings = set(headings_of(README))
    sections = docstring_sections()
    assert sections, "the model files' docstrings should name README sections"
    missing = {section: where for section, where in sections.items() if section not in headings}
    assert missing == {}, f"docstrings name README sections that are gone: {missing}"


def test_every_readme_section_a_graded_test_points_to_exists():
    from autograde import points

    headings = set(headings_of(README))
    marked = [row for folder in sorted((ROOT / "tests").iterdir()) if folder.is_dir()  # the hidden tests too, if here
              for row in points.markers(folder)]
    assert marked, "the graded tests' markers should name README sections"
    missing = {(file, test, section) for file, test, _, section in marked if section not in headings}
    assert missing == set(), f"graded tests send students to README sections that are gone: {missing}"
