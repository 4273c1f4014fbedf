"""How long the regrade takes: one correct submission, then a class with --jobs 1 and --jobs N.

    python tests/instructor/regrade_timing.py [--students 6] [--jobs 2]

Builds a draft release and `--students` copies of the reference solution in a scratch folder and times
`python -m grading regrade` on them (the whole command, the reference's own check included), each into a
fresh output folder. Prints a Markdown table headed by the machine, with the submissions it grades an hour
(after the fixed start) and that figure a core. Not a test: times are only as good as
the machine is quiet; INSTRUCTOR.md records what it printed.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

from synthetic_submissions import make_release, make_submission, reference, regrade  # noqa: E402


def timed(*args: str) -> float:
    started = time.monotonic()
    result = regrade(*args)
    if result.returncode:
        sys.exit(f"the regrade failed: {result.stderr.strip()}")
    return time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="regrade-timing-") as scratch:
        scratch = Path(scratch)
        release = make_release(scratch / "release")
        models = {f"models/{name}": reference(name) for name in ("transformer.py", "mamba.py")}
        made = [make_submission(release, scratch / "class", f"student{index}", models, bare=True)
                for index in range(args.students)]
        one = timed(str(made[0]), "--out", str(scratch / "one"))
        serial = timed(*map(str, made), "--out", str(scratch / "serial"), "--jobs", "1")
        parallel = timed(*map(str, made), "--out", str(scratch / "parallel"), "--jobs", str(args.jobs))
    cpu = platform.processor() or platform.machine()
    print(f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| what | wall time |\n| --- | ---: |")
    print(f"| one correct submission (the reference's check included) | {one:.1f} s |")
    print(f"| {args.students} submissions, --jobs 1 | {serial:.1f} s |")
    print(f"| {args.students} submissions, --jobs {args.jobs} | {parallel:.1f} s ({serial / parallel:.2f}× faster) |")
    # What a class costs beyond the fixed start (the reference's check), at the better --jobs.
    best = min(serial, parallel)
    each = (best - one) / (args.students - 1) if args.students > 1 else best
    hourly = 3600 / each
    cores = os.cpu_count() or 1
    print(f"| each further submission | {each:.1f} s |")
    print(f"| correct submissions an hour on this machine | {hourly:,.0f} ({hourly / cores:,.0f} a core) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
