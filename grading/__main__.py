"""The instructor's command line: `python -m grading <command>`; `python -m grading --help` lists them."""

import argparse
import sys
from pathlib import Path

from grading.course.roster import course_folder, read_roster
from grading.errors import GradingError

REPO = Path(__file__).resolve().parent.parent


def command_release(args) -> int:
    from grading.publish.release import release

    release(REPO, Path(args.out), check=not args.no_check)
    return 0


def run_regrade(args, out: Path):
    from grading.regrade.run import regrade
    from grading.regrade.sandbox import Limits

    limits = Limits(call_seconds=args.timeout, startup_seconds=args.startup_limit, run_seconds=args.time_limit,
                    memory_mb=args.memory, output_mb=args.output_limit)
    regrade(REPO, args.submissions, out, ref=args.ref, deadline=args.deadline,
            release=Path(args.release) if args.release else None, jobs=args.jobs, limits=limits, seed=args.seed)


def command_regrade(args) -> int:
    run_regrade(args, Path(args.out))
    return 0


def command_review(args) -> int:
    from grading.course.review import ReviewError, build_site
    from grading.regrade.submissions import check_paths

    site = Path(args.out)
    rubric = load_rubric(args)
    if args.scores and not Path(args.scores).is_dir():
        raise ReviewError(f"--scores {args.scores}: no such directory")
    if args.grades is None:
        run_regrade(args, site / "grades")
    build_site(check_paths(args.submissions), Path(args.grades or site / "grades"), site, rubric=rubric,
               scores=Path(args.scores) if args.scores else None)
    return 0


def command_mutants(args) -> int:
    from grading.publish.mutants import run_corpus

    return run_corpus(verbose=True)


# --- the course: rubric, roster, scores, similarity, gradebook, grades out ----------------------------------------


def load_rubric(args):
    from grading.course import rubric

    return rubric.load(Path(args.rubric) if getattr(args, "rubric", None) else rubric.RUBRIC, REPO)


def refused(command: str, error) -> int:
    """Bad input: one line per problem, each naming the command, and exit status 1."""
    for line in str(error).splitlines():
        print(f"grading {command}: {line}", file=sys.stderr)
    return 1


def command_rubric(args) -> int:
    from grading.course import rubric

    loaded = load_rubric(args)
    print(rubric.summary(loaded))
    readme = REPO / "README.md"
    if args.update_readme:
        changed = rubric.update_readme(loaded, readme)
        print(f"{readme}: {'rewrote the points table and headings' if changed else 'already in step'}")
        return 0
    problems = rubric.readme_problems(readme.read_text(encoding="utf-8"), loaded)
    if problems:
        raise rubric.RubricError("\n".join(problems + ["run python -m grading rubric --update-readme"]))
    print(f"{readme}: in step with the rubric")
    return 0


def command_collect(args) -> int:
    from grading.course.collect import collect, parse_when

    course = course_folder(args.course)
    loaded = load_rubric(args)
    problems = collect(course, parse_when(args.deadline), loaded.late, ref=args.ref)
    print(f"regrade them with: python -m grading regrade {course}/submissions/* --out {course}/grades")
    return refused("collect", "\n".join(problems)) if problems else 0


def roster_names(course: Path) -> list[str]:
    return [student.student for student in read_roster(course)]


def command_scores(args) -> int:
    from grading.course import scores
    from grading.course.gradebook import read_results, test_names

    course = course_folder(args.course)
    loaded = load_rubric(args)
    names = roster_names(course)
    results = read_results(course / "grades")
    written = scores.write_skeletons(course / "scores", loaded, {name: results.get(name, {}).get("commit", "")
                                                                 for name in names})
    if written:
        print(f"wrote {len(written)} scores file(s) to fill in: {', '.join(written)}")
    marks = scores.load_all(course / "scores", loaded, names, test_names(results))
    for name, mark in marks.items():
        left = [item.id for item in loaded.items if not item.bonus and item.id not in mark.points]
        open_requests = [request["item"] for request in mark.requests if not request["response"]]
        print(f"{name}: {len(mark.points)} of {len(loaded.items)} items scored"
              + (f"; to score: {', '.join(left)}" if left else "")
              + (f"; open regrade requests: {', '.join(open_requests)}" if open_requests else ""))
    return 0


def command_request(args) -> int:
    from grading.course import scores
    from grading.course.gradebook import read_results, test_names

    course = course_folder(args.course)
    loaded = load_rubric(args)
    path = scores.append_request(course / "scores", loaded, args.student, roster_names(course), args.item,
                                 args.text, test_names(read_results(course / "grades")))
    print(f"noted in {path}: write your answer in its response, change the points, then python -m grading gradebook")
    return 0


def command_similarity(args) -> int:
    from grading.course import similarity

    course = course_folder(args.course)
    paths = sorted((course / "submissions").glob("*.git"))
    if not paths:
        raise similarity.SimilarityError(f"{course}/submissions holds no repository: collect first")
    similarity.run(paths, similarity.starter_code(REPO), course / "similarity", threshold=args.threshold, min_shared=args.min_shared,
                   k=args.noise)
    return 0


def command_gradebook(args) -> int:
    from grading.course import gradebook as course_module

    course_module.write_all(course_folder(args.course), load_rubric(args))
    return 0


def command_export(args) -> int:
    from grading.course import gradebook as course_module
    from grading.course import export

    course = course_folder(args.course)
    loaded = load_rubric(args)
    state = course_module.write_all(course, loaded, log=lambda line: None)
    out = Path(args.out) if args.out else course / "final" / "canvas.csv"
    export.write_canvas(out, state, read_roster(course), loaded, args.assignment_id, args.partial)
    print(f"wrote {out}: import it in Canvas (Grades → Import)")
    return 0


def command_feedback(args) -> int:
    from grading.course.feedback import publish

    problems = publish(course_folder(args.course), load_rubric(args), push=args.push)
    return refused("feedback", "\n".join(problems)) if problems else 0


def add_course_commands(commands):
    def command(name, run, help, course=True):
        parser = commands.add_parser(name, help=help)
        if course:
            parser.add_argument("course", metavar="COURSE", help="the course folder: roster.csv and what the course "
                                                                 "commands write (INSTRUCTOR.md, section 8)")
        parser.add_argument("--rubric", metavar="FILE", help="the rubric (default grading/course/rubric.toml)")
        parser.set_defaults(run=run)
        return parser

    rubric = command("rubric", command_rubric, "check the rubric and that the README shows its points", course=False)
    rubric.add_argument("--update-readme", action="store_true", help="rewrite the README's points from the rubric")
    collect = command("collect", command_collect, "fetch every repository of COURSE/roster.csv into "
                                                  "COURSE/submissions, at the commit to grade, with its lateness")
    collect.add_argument("--deadline", required=True, metavar="WHEN", help="e.g. '2026-10-01 23:59 +0200'")
    collect.add_argument("--ref", default="main", help="the branch to collect (default main)")
    command("scores", command_scores, "write a scores file for each student that has none, check them all")
    request = command("request", command_request, "note a student's regrade request against a rubric item or test")
    request.add_argument("student")
    request.add_argument("item", help="a rubric item's id (W3) or a graded test's name")
    request.add_argument("text", help="the student's request, in their words")
    similarity = command("similarity", command_similarity, "pairs of submissions whose own code is unusually alike "
                                                           "(starter code and reference removed)")
    similarity.add_argument("--threshold", type=float, default=0.5, help="share of own code that flags a pair "
                                                                         "(default 0.5)")
    similarity.add_argument("--min-shared", type=int, default=400, metavar="N",
                            help="characters of shared tokens a flagged pair needs at least (default 400)")
    similarity.add_argument("--noise", type=positive(int), default=25, metavar="K",
                            help="characters of tokens in one fingerprint: shorter matches are ignored (default 25)")
    command("gradebook", command_gradebook, "merge test points, scores, adjustments and late penalties into "
                                            "COURSE/final: gradebook and feedback")
    export = command("export", command_export, "the gradebook as Canvas's gradebook import CSV")
    export.add_argument("--assignment-id", default="", metavar="N", help="the assignment's id in Canvas (the "
                                                                          "number at the end of its address)")
    export.add_argument("--partial", action="store_true", help="leave the cell of a student whose scores are "
                                                               "missing empty instead of refusing")
    export.add_argument("--out", metavar="FILE", help="default COURSE/final/canvas.csv")
    feedback = command("feedback", command_feedback, "publish: each student's FEEDBACK.md on the branch feedback "
                                                     "of their repository")
    feedback.add_argument("--push", action="store_true", help="push each feedback branch to the student's repository")


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    return parse


def add_regrade_options(parser):
    parser.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                        help="student repositories: clones or bare repositories, one folder each (named after it)")
    parser.add_argument("--ref", default="HEAD", help="the branch, tag or commit to grade (default HEAD)")
    parser.add_argument("--deadline", default="", metavar="WHEN",
                        help="grade the last commit of --ref made before WHEN (e.g. '2026-10-01 23:59 +0200')")
    parser.add_argument("--release", metavar="REPO", help="the repository `release` wrote: tamper flags compare "
                                                          "with its main branch (default: the template made now)")
    parser.add_argument("--jobs", type=positive(int), default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--timeout", type=positive(float), default=30.0, metavar="SECONDS",
                        help="limit on one call of the student's code, or the import of one file (default 30)")
    parser.add_argument("--startup-limit", type=positive(float), default=60.0, metavar="SECONDS",
                        help="limit on the sandbox starting and importing the student's two files (default 60)")
    parser.add_argument("--time-limit", type=positive(float), default=300.0, metavar="SECONDS",
                        help="limit on a submission's public tests, and again on its hidden ones (default 300)")
    parser.add_argument("--memory", type=positive(int), default=4096, metavar="MB",
                        help="address space of the sandboxed process (default 4096)")
    parser.add_argument("--output-limit", type=positive(int), default=64, metavar="MB",
                        help="data the sandbox may send back (default 64)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="draw the tests' inputs with this secret instead of a fresh one (to reproduce a run)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    release = commands.add_parser("release", help="write the student template (branch main) and the reference "
                                                  "(branch solution) as a new git repository at OUT")
    release.add_argument("out", metavar="OUT", help="a directory that does not exist yet, or an empty one")
    release.add_argument("--no-check", action="store_true",
                         help="skip the checks (leaks, scores, test runs): for looking at a draft only")
    release.set_defaults(run=command_release)
    regrade = commands.add_parser("regrade", help="grade student repositories with the instructor's public and "
                                                  "hidden tests: gradebook.csv, feedback/, results/ in --out")
    regrade.add_argument("--out", required=True, metavar="DIR", help="where the gradebook and feedback go")
    add_regrade_options(regrade)
    regrade.set_defaults(run=command_regrade)
    review = commands.add_parser("review", help="one static site of the students' READMEs beside their grades, "
                                                "tamper flags and feedback, with an index of the class")
    review.add_argument("--out", required=True, metavar="DIR", help="where the site goes (DIR/index.html)")
    review.add_argument("--grades", metavar="DIR", help="the output of an earlier regrade of these submissions "
                                                        "(default: regrade them now into DIR/grades)")
    review.add_argument("--scores", metavar="DIR", help="the instructor's scores files (COURSE/scores), shown in "
                                                        "each page's rubric panel")
    review.add_argument("--rubric", metavar="FILE", help="the rubric (default grading/course/rubric.toml)")
    add_regrade_options(review)
    review.set_defaults(run=command_review)
    mutants = commands.add_parser("mutants", help="run the graded tests against every mutant and correct "
                                                  "alternative, and tabulate which tests catch what")
    mutants.set_defaults(run=command_mutants)
    add_course_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except GradingError as error:
        return refused(args.command, error)
    except ModuleNotFoundError as error:  # nbgrader, nh3, ...: instructor tools that requirements.txt leaves out
        print(f"python -m grading {args.command}: {error.name} is not installed: "
              "python -m pip install -r requirements-dev.txt", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
