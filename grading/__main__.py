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


def command_mutants(args) -> int:
    from grading.mutants import run_corpus

    return run_corpus(verbose=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    release = commands.add_parser("release", help="write the student template (branch main) and the reference "
                                                  "(branch solution) as a new git repository at OUT")
    release.add_argument("out", metavar="OUT", help="a directory that does not exist yet, or an empty one")
    release.add_argument("--no-check", action="store_true",
                         help="skip the checks (leaks, scores, test runs): for looking at a draft only")
    release.set_defaults(run=command_release)
    mutants = commands.add_parser("mutants", help="run the graded tests against every mutant and correct "
                                                  "alternative, and tabulate which tests catch what")
    mutants.set_defaults(run=command_mutants)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
