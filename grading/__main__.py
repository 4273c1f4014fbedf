"""The instructor's command line, `python -m grading COMMAND`: one command per step of a course, and
`python -m grading` alone lists them in that order (COMMANDS)."""

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
    from grading.course.rubric import Late
    from grading.regrade.run import regrade
    from grading.regrade.sandbox import Limits

    limits = Limits(call_seconds=args.timeout, startup_seconds=args.startup_limit, run_seconds=args.time_limit,
                    memory_mb=args.memory, output_mb=args.output_limit)
    regrade(REPO, args.submissions, out, ref=args.ref, deadline=args.deadline,
            release=Path(args.release) if args.release else None, jobs=args.jobs, limits=limits, seed=args.seed,
            late=load_rubric(args).late if args.deadline else Late(), shard=getattr(args, "shard", None))


def command_regrade(args) -> int:
    run_regrade(args, Path(args.out))
    return 0


def command_merge(args) -> int:
    from grading.regrade.shards import merge

    merge([Path(folder) for folder in args.shards], Path(args.out))
    return 0


def command_review(args) -> int:
    from grading.course.review import ReviewError, build_site
    from grading.regrade.submissions import check_paths

    site = Path(args.out)
    rubric = load_rubric(args)
    course = course_folder(args.course) if args.course else None
    if course is not None and args.grades:
        raise ReviewError("--course reads the grades from COURSE/grades: leave --grades out")
    grades = course / "grades" if course is not None else Path(args.grades or site / "grades")
    if course is None and args.grades is None:
        run_regrade(args, grades)
    build_site(check_paths(args.submissions), grades, site, rubric=rubric, course=course)
    return 0


def command_mutants(args) -> int:
    from grading.publish.corpus import load_extra, run_corpus

    extra = load_extra(Path(args.extra)) if args.extra else None
    return run_corpus(verbose=True, extra=extra, report=Path(args.report) if args.report else None)


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
    from grading.course.collect import collect, parse_when, regrade_command
    from grading.publish.release import check_release

    course = course_folder(args.course)
    loaded = load_rubric(args)
    deadline = parse_when(args.deadline)
    release = check_release(Path(args.release)) if args.release else None
    problems = collect(course, deadline, loaded.late, ref=args.ref, release=release)
    print(f"regrade them with: {regrade_command(course, args.release)}")
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
    required = [item.id for item in loaded.items if not item.bonus]
    bonus = [item.id for item in loaded.items if item.bonus]
    for name, mark in marks.items():
        left = [item for item in required if item not in mark.points]
        open_requests = [request["item"] for request in mark.requests if not request["response"]]
        print(f"{name}: {len(required) - len(left)} of {len(required)} items scored, "
              f"{sum(item in mark.points for item in bonus)} of {len(bonus)} bonus items"
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
    similarity.run(paths, similarity.starter_code(REPO), course / "similarity", threshold=args.threshold,
                   min_shared=args.min_shared, k=args.noise)
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

    problems = publish(course_folder(args.course), load_rubric(args), push=args.push, partial=args.partial)
    return refused("feedback", "\n".join(problems)) if problems else 0


def course_options(parser, course: bool = True):
    if course:
        parser.add_argument("course", metavar="COURSE", help="the course folder: roster.csv and what the course "
                                                             "commands write (INSTRUCTOR.md, section 9)")
    parser.add_argument("--rubric", metavar="FILE", help="the rubric (default grading/course/rubric.toml)")


def positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    return parse


def release_options(parser):
    parser.add_argument("out", metavar="OUT", help="a directory that does not exist yet, or an empty one")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the checks (leaks, scores, test runs): for looking at a draft only")


def collect_options(parser):
    course_options(parser)
    parser.add_argument("--deadline", required=True, metavar="WHEN", help="e.g. '2026-10-01 23:59 +0200'")
    parser.add_argument("--ref", default="main", help="the branch to collect (default main)")
    parser.add_argument("--release", metavar="REPO", help="the repository `release` wrote, for the regrade that "
                                                          "follows (remembered in COURSE/collected.json)")


def regrade_options(parser):
    parser.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                        help="student repositories: clones or bare repositories, one folder each (named after it)")
    parser.add_argument("--ref", default="HEAD", help="the branch, tag or commit to grade (default HEAD)")
    parser.add_argument("--deadline", default="", metavar="WHEN",
                        help="grade the last commit of --ref in the rubric's late window after WHEN, and count its "
                             "days late, as collect does (e.g. '2026-10-01 23:59 +0200')")
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
                        help="data a submission's sandboxes may send back, public and hidden calls each (default 64)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="draw the tests' inputs with this secret instead of a fresh one (to reproduce a run)")


def grades_options(parser):
    parser.add_argument("--out", required=True, metavar="DIR", help="where the gradebook and feedback go")
    parser.add_argument("--rubric", metavar="FILE", help="the rubric whose late policy --deadline applies "
                                                         "(default grading/course/rubric.toml)")
    regrade_options(parser)
    parser.add_argument("--shard", type=shard_type, metavar="I/N",
                        help="grade only the I-th of N equal shares of the class (by name), for `merge`; needs --seed")


def shard_type(text: str):
    from grading.regrade.shards import ShardError, parse

    try:
        return parse(text)
    except ShardError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def merge_options(parser):
    parser.add_argument("shards", metavar="SHARD", nargs="+", help="the --out folder of every regrade --shard I/N")
    parser.add_argument("--out", required=True, metavar="DIR", help="where the class's gradebook and feedback go")


def rubric_options(parser):
    course_options(parser, course=False)
    parser.add_argument("--update-readme", action="store_true", help="rewrite the README's points from the rubric")


def similarity_options(parser):
    from grading.course.similarity import MIN_SHARED, NOISE, THRESHOLD

    course_options(parser)
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="share of own code that flags a pair "
                                                                           f"(default {THRESHOLD})")
    parser.add_argument("--min-shared", type=int, default=MIN_SHARED, metavar="N",
                        help=f"characters of shared tokens a flagged pair needs at least (default {MIN_SHARED})")
    parser.add_argument("--noise", type=positive(int), default=NOISE, metavar="K",
                        help=f"characters of tokens in one fingerprint: shorter matches are ignored (default {NOISE})")


def export_options(parser):
    course_options(parser)
    parser.add_argument("--assignment-id", default="", metavar="N", help="the assignment's id in Canvas (the "
                                                                          "number at the end of its address)")
    parser.add_argument("--partial", action="store_true", help="leave the cell of a student whose scores are "
                                                               "missing empty instead of refusing")
    parser.add_argument("--out", metavar="FILE", help="default COURSE/final/canvas.csv")


def feedback_options(parser):
    course_options(parser)
    parser.add_argument("--push", action="store_true", help="push each feedback branch to the student's repository")
    parser.add_argument("--partial", action="store_true", help="publish even where scores are missing: that "
                                                               "feedback says its grade is provisional and why")


def request_options(parser):
    course_options(parser)
    parser.add_argument("student")
    parser.add_argument("item", help="a rubric item's id (W3) or a graded test's name")
    parser.add_argument("text", help="the student's request, in their words")


def review_options(parser):
    parser.add_argument("--out", required=True, metavar="DIR", help="where the site goes (DIR/index.html)")
    parser.add_argument("--grades", metavar="DIR", help="the output of an earlier regrade of these submissions "
                                                        "(default: regrade them now into DIR/grades)")
    parser.add_argument("--course", metavar="COURSE", help="the course folder (section 9 of INSTRUCTOR.md): each "
                                                          "page shows the grade of record, its parts, the rubric's "
                                                          "points and comments, and the student's feedback")
    parser.add_argument("--rubric", metavar="FILE", help="the rubric (default grading/course/rubric.toml)")
    regrade_options(parser)


def mutants_options(parser):
    parser.add_argument("--extra", metavar="FILE", help="a corpus of your own instead: a Python file with lists "
                        "WRONG and CORRECT of {name, target, why, kind, source} (grading/publish/corpus.py)")
    parser.add_argument("--report", metavar="FILE", help="also write every variant's results, messages and "
                        "diagnoses to FILE as JSON")


# Every command, in the order a course uses them: what it does (one line), its function, its options.
COMMANDS = {
    "release": ("publish: the student template (branch main) and the answers (branch solution), a new repository",
                command_release, release_options),
    "collect": ("fetch the roster's repositories into COURSE at the commits to grade, with days late",
                command_collect, collect_options),
    "regrade": ("the tests' grade: public and hidden tests, the students' code in a sandbox, judged outside it",
                command_regrade, grades_options),
    "merge": ("one gradebook from the shards of a class that several machines regraded (regrade --shard)",
              command_merge, merge_options),
    "rubric": ("check the rubric (what everything is worth) and that the README shows its points",
               command_rubric, rubric_options),
    "scores": ("a scores file per student for the items graded by hand; every one checked",
               command_scores, course_options),
    "similarity": ("pairs of submissions whose own code is alike (starter code and reference removed)",
                   command_similarity, similarity_options),
    "gradebook": ("the grade of record: test points, scores, adjustments, late penalty; each student's feedback",
                  command_gradebook, course_options),
    "export": ("grades out to the LMS: the gradebook as Canvas's import CSV", command_export, export_options),
    "feedback": ("grades out to the students: FEEDBACK.md on a branch of each student's repository",
                 command_feedback, feedback_options),
    "request": ("note a student's regrade request against a rubric item or a graded test",
                command_request, request_options),
    "review": ("every writeup beside its grade, flags, feedback and rubric, as one static site",
               command_review, review_options),
    "mutants": ("check the graded tests: which of them catch each plausible student mistake",
                command_mutants, mutants_options),
}


def listing() -> str:
    """The commands, one line each, in the order a course uses them."""
    width = max(map(len, COMMANDS))
    return "\n".join(["usage: python -m grading COMMAND ...   (python -m grading COMMAND --help: its options)", "",
                      "The instructor's tools, in the order a course uses them (INSTRUCTOR.md):"]
                     + [f"  {name:<{width}}  {summary}" for name, (summary, _, _) in COMMANDS.items()])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(listing())
        return 2
    parser = argparse.ArgumentParser(prog="python -m grading", usage="python -m grading COMMAND ...",
                                     description=listing().split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS,
                                     prog="python -m grading")
    for name, (summary, run, options) in COMMANDS.items():
        command = commands.add_parser(name, description=summary)
        options(command)
        command.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except GradingError as error:
        return refused(args.command, error)
    except OSError as error:  # a folder that is a file, a missing parent, no permission: the path, in one line
        return refused(args.command, f"{error.filename}: {error.strerror}" if error.filename else error)
    except ModuleNotFoundError as error:  # nbgrader, nh3, ...: instructor tools that requirements.txt leaves out
        print(f"python -m grading {args.command}: {error.name} is not installed: "
              "python -m pip install -r requirements-dev.txt", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
