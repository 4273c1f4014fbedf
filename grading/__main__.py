"""The instructor's command line: `python -m grading <command>`; `python -m grading --help` lists them."""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def command_release(args) -> int:
    from grading.publish.release import ReleaseError, release
    from grading.publish.template import TemplateError

    try:
        release(REPO, Path(args.out), check=not args.no_check)
    except (ReleaseError, TemplateError) as error:
        print(f"grading release: {error}", file=sys.stderr)
        return 1
    return 0


def run_regrade(args, out: Path):
    from grading.course.rubric import Late
    from grading.regrade.run import regrade
    from grading.regrade.sandbox import Limits

    limits = Limits(call_seconds=args.timeout, startup_seconds=args.startup_limit, run_seconds=args.time_limit,
                    memory_mb=args.memory, output_mb=args.output_limit)
    regrade(REPO, args.submissions, out, ref=args.ref, deadline=args.deadline,
            release=Path(args.release) if args.release else None, jobs=args.jobs, limits=limits, seed=args.seed,
            late=load_rubric(args).late if args.deadline else Late())


def command_regrade(args) -> int:
    from grading.course.rubric import RubricError
    from grading.regrade.run import RegradeError

    try:
        run_regrade(args, Path(args.out))
    except (RegradeError, RubricError) as error:
        return refused("regrade", error)
    return 0


def command_review(args) -> int:
    from grading.regrade.run import RegradeError
    from grading.course.review import ReviewError, build_site
    from grading.regrade.submissions import SubmissionError, check_paths

    site = Path(args.out)
    try:
        rubric = load_rubric(args)
        course = course_folder(args.course) if args.course else None
        if course is not None and args.grades:
            raise ReviewError("--course reads the grades from COURSE/grades: leave --grades out")
        grades = course / "grades" if course is not None else Path(args.grades or site / "grades")
        if course is None and args.grades is None:
            run_regrade(args, grades)
        build_site(check_paths(args.submissions), grades, site, rubric=rubric, course=course)
    except (RegradeError, ReviewError, SubmissionError, *course_errors()) as error:
        return refused("review", error)
    return 0


def command_mutants(args) -> int:
    from grading.publish.corpus import CorpusError, load_extra, run_corpus

    try:
        extra = load_extra(Path(args.extra)) if args.extra else None
    except CorpusError as error:
        print(f"grading mutants: {error}", file=sys.stderr)
        return 1
    return run_corpus(verbose=True, extra=extra, report=Path(args.report) if args.report else None)


# --- the course: rubric, roster, scores, similarity, gradebook, grades out ----------------------------------------


def load_rubric(args):
    from grading.course import rubric

    return rubric.load(Path(args.rubric) if getattr(args, "rubric", None) else rubric.RUBRIC, REPO)


def refused(command: str, error: Exception) -> int:
    """Bad input: one line per problem, each naming the command, and exit status 1."""
    for line in str(error).splitlines():
        print(f"grading {command}: {line}", file=sys.stderr)
    return 1


def course_errors():
    from grading.course.gradebook import CourseError
    from grading.course.export import ExportError
    from grading.course.roster import RosterError
    from grading.course.rubric import RubricError
    from grading.course.scores import ScoresError
    from grading.course.similarity import SimilarityError
    from grading.regrade.submissions import SubmissionError

    return (CourseError, ExportError, RosterError, RubricError, ScoresError, SimilarityError, SubmissionError)


def course_folder(text: str) -> Path:
    from grading.course.roster import RosterError

    course = Path(text)
    if not (course / "roster.csv").is_file():
        raise RosterError(f"{course}: not a course folder (it needs roster.csv: student,repository per line)")
    return course


def command_rubric(args) -> int:
    from grading.course import rubric

    try:
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
    except course_errors() as error:
        return refused("rubric", error)
    return 0


def command_collect(args) -> int:
    from grading.course import roster

    try:
        course = course_folder(args.course)
        loaded = load_rubric(args)
        problems = roster.collect(course, roster.parse_when(args.deadline), loaded.late, ref=args.ref)
    except course_errors() as error:
        return refused("collect", error)
    print(f"regrade them with: python -m grading regrade {course}/submissions/* --out {course}/grades")
    return refused("collect", "\n".join(problems)) if problems else 0


def roster_names(course: Path) -> list[str]:
    from grading.course import roster

    return [student.student for student in roster.read_roster(course)]


def command_scores(args) -> int:
    from grading.course import scores
    from grading.course.gradebook import read_results, test_names

    try:
        course = course_folder(args.course)
        loaded = load_rubric(args)
        names = roster_names(course)
        results = read_results(course / "grades")
        written = scores.write_skeletons(course / "scores", loaded, {name: results.get(name, {}).get("commit", "")
                                                                     for name in names})
        if written:
            print(f"wrote {len(written)} scores file(s) to fill in: {', '.join(written)}")
        marks = scores.load_all(course / "scores", loaded, names, test_names(results))
    except course_errors() as error:
        return refused("scores", error)
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

    try:
        course = course_folder(args.course)
        loaded = load_rubric(args)
        path = scores.append_request(course / "scores", loaded, args.student, roster_names(course), args.item,
                                     args.text, test_names(read_results(course / "grades")))
    except course_errors() as error:
        return refused("request", error)
    print(f"noted in {path}: write your answer in its response, change the points, then python -m grading gradebook")
    return 0


def command_similarity(args) -> int:
    from grading.course import similarity
    from grading.publish.release import shipped_files
    from grading.regrade.submissions import MODEL_FILES
    from grading.publish.template import make_template

    try:
        course = course_folder(args.course)
        paths = sorted((course / "submissions").glob("*.git"))
        if not paths:
            raise similarity.SimilarityError(f"{course}/submissions holds no repository: collect first")
        shipped = shipped_files(REPO)
        template = make_template({path: content for path, (content, _) in shipped.items()})
        starter = [(path, template[path].decode()) for path in MODEL_FILES]
        starter += [(path, (REPO / path).read_text(encoding="utf-8")) for path in MODEL_FILES]
        similarity.run(paths, starter, course / "similarity", threshold=args.threshold, min_shared=args.min_shared,
                       k=args.noise)
    except course_errors() as error:
        return refused("similarity", error)
    return 0


def command_gradebook(args) -> int:
    from grading.course import gradebook as course_module

    try:
        course_module.write_all(course_folder(args.course), load_rubric(args))
    except course_errors() as error:
        return refused("gradebook", error)
    return 0


def command_export(args) -> int:
    from grading.course import gradebook as course_module
    from grading.course import export
    from grading.course import roster

    try:
        course = course_folder(args.course)
        loaded = load_rubric(args)
        state = course_module.write_all(course, loaded, log=lambda line: None)
        out = Path(args.out) if args.out else course / "final" / "canvas.csv"
        export.write_canvas(out, state, roster.read_roster(course), loaded, args.assignment_id, args.partial)
    except course_errors() as error:
        return refused("export", error)
    print(f"wrote {out}: import it in Canvas (Grades → Import)")
    return 0


def command_feedback(args) -> int:
    from grading.course import export

    try:
        problems = export.publish(course_folder(args.course), load_rubric(args), push=args.push, partial=args.partial)
    except course_errors() as error:
        return refused("feedback", error)
    return refused("feedback", "\n".join(problems)) if problems else 0


def add_course_commands(commands):
    from grading.course.similarity import MIN_SHARED, NOISE, THRESHOLD

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
    similarity.add_argument("--threshold", type=float, default=THRESHOLD, help="share of own code that flags a "
                                                                               f"pair (default {THRESHOLD})")
    similarity.add_argument("--min-shared", type=int, default=MIN_SHARED, metavar="N", help="characters of shared "
                            f"tokens a flagged pair needs at least (default {MIN_SHARED})")
    similarity.add_argument("--noise", type=positive(int), default=NOISE, metavar="K", help="characters of tokens "
                            f"in one fingerprint: shorter matches are ignored (default {NOISE})")
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
    feedback.add_argument("--partial", action="store_true", help="publish even where scores are missing: that "
                                                               "feedback says its grade is provisional and why")


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
    regrade.add_argument("--rubric", metavar="FILE", help="the rubric whose late policy --deadline applies "
                                                          "(default grading/course/rubric.toml)")
    add_regrade_options(regrade)
    regrade.set_defaults(run=command_regrade)
    review = commands.add_parser("review", help="one static site of the students' READMEs beside their grades, "
                                                "tamper flags and feedback, with an index of the class")
    review.add_argument("--out", required=True, metavar="DIR", help="where the site goes (DIR/index.html)")
    review.add_argument("--grades", metavar="DIR", help="the output of an earlier regrade of these submissions "
                                                        "(default: regrade them now into DIR/grades)")
    review.add_argument("--course", metavar="COURSE", help="the course folder (section 9 of INSTRUCTOR.md): each "
                                                          "page shows the grade of record, its parts, the rubric's "
                                                          "points and comments, and the student's feedback")
    review.add_argument("--rubric", metavar="FILE", help="the rubric (default grading/course/rubric.toml)")
    add_regrade_options(review)
    review.set_defaults(run=command_review)
    mutants = commands.add_parser("mutants", help="run the graded tests against every mutant and correct "
                                                  "alternative, and tabulate which tests catch what")
    mutants.add_argument("--extra", metavar="FILE", help="a corpus of your own instead: a Python file with lists "
                         "WRONG and CORRECT of {name, target, why, kind, source} (grading/publish/corpus.py)")
    mutants.add_argument("--report", metavar="FILE", help="also write every variant's results, messages and "
                         "diagnoses to FILE as JSON")
    mutants.set_defaults(run=command_mutants)
    add_course_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as error:  # nbgrader, nh3, ...: instructor tools that requirements.txt leaves out
        print(f"python -m grading {args.command}: {error.name} is not installed: "
              "python -m pip install -r requirements-dev.txt", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
