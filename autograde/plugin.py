"""The autograder's pytest plugin: points per graded test, short failure reports, a score table.

A graded test is marked `@pytest.mark.points(n, readme="<README section>")`. At the end of a session
that ran graded tests, pytest prints a table (test, earned, possible, total); `--score-json PATH`
writes the same as JSON, `--score-markdown PATH` appends it as a Markdown table (for the GitHub job
summary). A failing graded test is reported in a few lines — what was compared, expected, got, by how
much, the tolerance, the likely cause where one is sure, the README section to reread — instead of a
traceback.

A test marked `needs_solution` needs the student's finished models: when it meets a function that is
still a stub (NotImplementedError), it is skipped, naming that function, instead of failing.

Graded tests compare through their `case` (autograde/harness.py); `expect_close` gives a test that has no
case the same message.
"""

import json
import traceback
from pathlib import Path

import pytest

from autograde import points
from autograde.harness import Case, GradedFailure, compare


def expect_close(actual, expected, *, atol: float, rtol: float, what: str):
    """Fail unless |actual - expected| <= atol + rtol * |expected| everywhere (shapes must match), with the
    graded tests' message: expected, got, where and by how much they differ most, the tolerance."""
    message = compare(actual, expected, atol=atol, rtol=rtol, what=what, hidden=False)
    if message is not None:
        raise GradedFailure(message)


# --- the plugin -------------------------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("scoring", "assignment score")
    group.addoption("--score-json", metavar="PATH", help="write the graded tests' points as JSON to PATH")
    group.addoption("--score-markdown", metavar="PATH",
                    help="append the score table as Markdown to PATH (e.g. $GITHUB_STEP_SUMMARY)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, readme=section): a graded test worth n points; "
                                       "a failure points the student to that README section")
    config.addinivalue_line("markers", "needs_solution: skip, naming the stub, when a student function "
                                       "is not written yet")
    config.pluginmanager.register(Scorer(config), "scoring-scorer")


@pytest.fixture
def case(request):
    """A graded test's access to the student's code (autograde/harness.py), run in this process on one
    thread: the tests' tensors are tiny, and a second thread on a busy machine only waits for the first."""
    import torch

    hidden = Path(str(request.node.fspath)).parent.name == "hidden"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Case(getattr(request.node, "originalname", None) or request.node.name, run_now=True, hidden=hidden)
    torch.set_num_threads(threads)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A graded test's verdict comes when its function returns: every expectation it stated must hold."""
    result = yield
    case = pyfuncitem.funcargs.get("case")
    if isinstance(case, Case):
        case.finish()
    return result


def _points_marker(item):
    return item.get_closest_marker("points")


def _test_name(item) -> str:
    """The test function's name, without parameters: points belong to the function."""
    return getattr(item, "originalname", None) or item.name


def _question(item) -> str:
    stem = Path(str(item.fspath)).stem  # test_q1_transformer -> Q1
    parts = stem.split("_")
    return parts[1].upper() if len(parts) > 1 and parts[1][:1] == "q" else stem


def _unwritten_stub(excinfo):
    """The NotImplementedError in an exception's chain, if any."""
    error = excinfo.value if excinfo is not None else None
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NotImplementedError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _stub_message(error: NotImplementedError) -> str:
    from main import unimplemented_message  # main.py imports nothing heavy at the top

    return unimplemented_message(error)


def _where_it_broke(excinfo) -> str:
    """The deepest frame in the student's model files, as 'models/x.py:line: code'."""
    for frame in reversed(traceback.extract_tb(excinfo.tb)):
        path = Path(frame.filename)
        if path.parent.name == "models":
            return f"models/{path.name}:{frame.lineno}: {frame.line}"
    return ""


def _short_report(item, excinfo) -> str:
    readme = _points_marker(item).kwargs.get("readme")
    stub = _unwritten_stub(excinfo)
    if stub is not None:
        return _stub_message(stub)
    if isinstance(excinfo.value, GradedFailure):
        message = str(excinfo.value)
    elif isinstance(excinfo.value, AssertionError):
        message = str(excinfo.value).split("\nassert ")[0] or "a check failed"
    elif excinfo.typename == "Failed":  # pytest.fail, e.g. pytest-timeout's "Timeout (>120.0s)"
        message = str(excinfo.value).strip().splitlines()[0]
    else:
        text = str(excinfo.value).strip()
        message = f"your code raised {excinfo.typename}: {text.splitlines()[0] if text else ''}"
        where = _where_it_broke(excinfo)
        if where:
            message += f"\n  at {where}"
    if readme:
        message += f"\n  reread README section '{readme}'"
    return message


class Scorer:
    """Collects each graded test's outcome and the outcomes of the others, for the table and the JSON."""

    def __init__(self, config):
        self.config = config
        self.public_total = points.total(Path(config.rootpath))  # what the public graded tests are worth
        self.graded = {}  # (file, test name) -> row
        self.keys = {}  # nodeid -> (file, test name)
        self.others = {}  # nodeid -> {"outcome", "message"}

    def pytest_collection_finish(self, session):
        """The graded tests that will run (after any deselection); the score is written at once, every test
        'not run', so that a run stopped from outside still leaves a score file."""
        for item in session.items:
            marker = _points_marker(item)
            if marker is None:
                continue
            key = (str(item.fspath), _test_name(item))
            self.keys[item.nodeid] = key
            self.graded.setdefault(key, {
                "name": _test_name(item), "question": _question(item), "file": Path(str(item.fspath)).name,
                "hidden": Path(str(item.fspath)).parent.name == "hidden",
                "points": float(marker.args[0]), "readme": marker.kwargs.get("readme"),
                "outcome": None, "message": "",
            })
        self.write_json()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.excinfo is None or report.outcome == "skipped":
            return report
        if call.excinfo.errisinstance((pytest.skip.Exception, KeyboardInterrupt)):
            return report
        if _points_marker(item) is not None:
            report.longrepr = _short_report(item, call.excinfo)
            report.user_properties.append(("diagnoses", getattr(call.excinfo.value, "diagnoses", ())))
        elif item.get_closest_marker("needs_solution") is not None:
            stub = _unwritten_stub(call.excinfo)
            if stub is not None:
                report.outcome = "skipped"
                # Placed at the stub, so that -rs folds every test one stub holds up into one line.
                where = traceback.extract_tb(stub.__traceback__)[-1]
                report.longrepr = (where.filename, where.lineno,
                                   f"Skipped: needs the finished models; {_stub_message(stub)}")
        return report

    def pytest_runtest_logreport(self, report):
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
        if report.when != "call" and outcome == "passed":
            return
        message = ""
        if report.failed:
            message = str(report.longrepr)
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = report.longrepr[2]
        key = self.keys.get(report.nodeid)
        if key is None:
            previous = self.others.get(report.nodeid)
            if previous is None or previous["outcome"] == "passed":
                self.others[report.nodeid] = {"outcome": outcome, "message": message[-2000:]}
            return
        row = self.graded[key]
        # A parametrised graded test earns its points only if every case passes.
        if row["outcome"] in (None, "passed"):
            row["outcome"], row["message"] = outcome, message
        self.write_json()

    def write_json(self, finished: bool = False):
        """The score so far to --score-json: written when collection ends, rewritten after every graded test
        (atomically), so that a run stopped by a time limit still leaves the points it earned."""
        if self.config.getoption("score_json"):
            path = Path(self.config.getoption("score_json"))
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(score(self, finished), indent=2) + "\n")
            partial.replace(path)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session):
        """Outermost, so that the score table comes after pytest's own summary: the last thing printed."""
        result = yield
        self.result = score(self)
        self.write_json(finished=True)
        if self.config.getoption("score_markdown") and self.result["tests"]:
            with open(self.config.getoption("score_markdown"), "a", encoding="utf-8") as file:
                file.write(score_markdown(self.result))
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        summary = score(self)
        if terminal is None or not summary["tests"]:
            return result
        stubs = [message for message in summary["ungraded"]["skipped"].values() if "needs the finished" in message]
        if stubs:
            terminal.write_line(f"{len(stubs)} other test{'s' if len(stubs) != 1 else ''} skipped until your models "
                                f"are finished (e.g. {stubs[0].split('; ', 1)[-1]})")
        terminal.write_sep("=", "assignment score")
        for line in score_table(summary):
            terminal.write_line(line)
        ran = sum(1 for row in summary["tests"] if row["outcome"] != "not run")
        if ran < len(summary["tests"]):
            terminal.write_line(f"(a partial score: {ran} of the {len(summary['tests'])} graded tests here ran; "
                                f"`python -m pytest tests/graded` gives the whole score)")
        return result


def score(scorer: Scorer, finished: bool = True) -> dict:
    """The session's score: total, max, one row per graded test collected (one that did not run earns
    nothing, with the reason), and the other tests' outcomes. `finished`: whether pytest got to its end."""
    rows = []
    for row in scorer.graded.values():
        if row["outcome"] is None:
            why = ("did not run: the session ended first (its time limit?)" if finished else
                   "had not finished when this score was written: if the run ends here, it was stopped")
            row = {**row, "outcome": "not run", "message": why}
        rows.append({**row, "earned": row["points"] if row["outcome"] == "passed" else 0.0})
    others = scorer.others.values()
    ran = [row for row in rows if row["outcome"] != "not run"]
    return {
        "total": sum(row["earned"] for row in rows),
        "max": sum(row["points"] for row in rows),
        "complete": len(ran) == len(rows) and sum(row["points"] for row in rows if not row["hidden"]) ==
        scorer.public_total,
        "finished": finished,
        "tests": rows,
        "ungraded": {
            "passed": sum(1 for value in others if value["outcome"] == "passed"),
            "skipped": {nodeid: value["message"] for nodeid, value in scorer.others.items()
                        if value["outcome"] == "skipped"},
            "failed": {nodeid: value["message"] for nodeid, value in scorer.others.items()
                       if value["outcome"] == "failed"},
        },
    }


def _fmt(points: float) -> str:
    return f"{points:g}"


def score_table(result: dict) -> list[str]:
    """The score as fixed-width text lines."""
    width = max([len(row["name"]) for row in result["tests"]] + [30])
    lines = [f"{'question':8}  {'test':{width}}  {'earned':>6}  {'possible':>8}"]
    for row in result["tests"]:
        mark = "" if row["outcome"] == "passed" else "  ✗"
        lines.append(f"{row['question']:8}  {row['name']:{width}}  {_fmt(row['earned']):>6}  "
                     f"{_fmt(row['points']):>8}{mark}")
    lines.append(f"{'total':8}  {'':{width}}  {_fmt(result['total']):>6}  {_fmt(result['max']):>8}")
    return lines


def score_markdown(result: dict) -> str:
    """The score as a Markdown table, for the GitHub Actions job summary."""
    lines = [f"## Score: {_fmt(result['total'])} / {_fmt(result['max'])}", "",
             "| question | test | earned | possible |", "| --- | --- | ---: | ---: |"]
    for row in result["tests"]:
        mark = "✅" if row["outcome"] == "passed" else "❌"
        lines.append(f"| {row['question']} | {mark} `{row['name']}` | {_fmt(row['earned'])} | {_fmt(row['points'])} |")
    lines.append(f"| **total** | | **{_fmt(result['total'])}** | **{_fmt(result['max'])}** |")
    failed = [row for row in result["tests"] if row["outcome"] != "passed" and row["message"]]
    if failed:
        lines += ["", "<details><summary>Why points were lost</summary>", ""]
        for row in failed:
            lines += [f"**{row['name']}**", "", "```", row["message"], "```", ""]
        lines.append("</details>")
    return "\n".join(lines) + "\n"
