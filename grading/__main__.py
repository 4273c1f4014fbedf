"""The instructor's command line: `python -m grading <command>`; `python -m grading --help` lists them."""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def command_release(args) -> int:
    from grading.release import ReleaseError, release
    from grading.template import TemplateError

    try:
        release(REPO, Path(args.out), check=not args.no_check)
    except (ReleaseError, TemplateError) as error:
        print(f"grading release: {error}", file=sys.stderr)
        return 1
    return 0


def run_regrade(args, out: Path):
    from grading.regrade import regrade
    from grading.sandbox import Limits

    limits = Limits(call_seconds=args.timeout, startup_seconds=args.startup_limit, run_seconds=args.time_limit,
                    memory_mb=args.memory, output_mb=args.output_limit)
    regrade(REPO, args.submissions, out, ref=args.ref, deadline=args.deadline,
            release=Path(args.release) if args.release else None, jobs=args.jobs, limits=limits, seed=args.seed)


def command_regrade(args) -> int:
    from grading.regrade import RegradeError

    try:
        run_regrade(args, Path(args.out))
    except RegradeError as error:
        print(f"grading regrade: {error}", file=sys.stderr)
        return 1
    return 0


def command_review(args) -> int:
    from grading.regrade import RegradeError
    from grading.review import ReviewError, build_site
    from grading.submissions import SubmissionError, check_paths

    site = Path(args.out)
    try:
        if args.grades is None:
            run_regrade(args, site / "grades")
        build_site(check_paths(args.submissions), Path(args.grades or site / "grades"), site)
    except (RegradeError, ReviewError, SubmissionError) as error:
        print(f"grading review: {error}", file=sys.stderr)
        return 1
    return 0


def command_mutants(args) -> int:
    from grading.mutants import run_corpus

    return run_corpus(verbose=True)


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
    add_regrade_options(review)
    review.set_defaults(run=command_review)
    mutants = commands.add_parser("mutants", help="run the graded tests against every mutant and correct "
                                                  "alternative, and tabulate which tests catch what")
    mutants.set_defaults(run=command_mutants)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as error:  # nbgrader, nh3, ...: instructor tools that requirements.txt leaves out
        print(f"python -m grading {args.command}: {error.name} is not installed: "
              "python -m pip install -r requirements-dev.txt", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
