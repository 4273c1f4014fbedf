"""`python -m grading similarity COURSE`: pairs of submissions whose own code is unusually alike, with the
matching lines, for the instructor to read. It is evidence to look at, never a verdict.

The student code is the two model files at the graded commit (read straight from git objects, as the
regrade reads them). Each file is tokenized by copydetect (Pygments' Python lexer; nothing is imported or run),
which writes every variable, function and class name as one letter and drops comments and whitespace, so a
renamed copy reads the same as its original. Every run of `k` tokens (`--noise`) becomes a fingerprint.
Fingerprints that also occur in the starter code (the template's model files) or in the reference solution are
removed: what is left is the student's own code. Two students' similarity is the share of their own code
whose fingerprints the other has (each way; the pair is ranked by the larger). A pair is flagged when that
share reaches `--threshold` and the shared code is at least `--min-shared` characters of tokens (so two
nearly empty submissions are not flagged for the little they both add).

Why copydetect (0.5.0, MIT, on PyPI): it is the maintained Python implementation of winnowing (Schleimer et al.,
as in MOSS) with boilerplate removal and a map from fingerprints back to the source text, which gives the
matching lines. We keep every fingerprint (a winnowing window of 1): the files are small, and Python's
hash(), salted per process, would otherwise pick different fingerprints on every run. The starter and
reference fingerprints are removed from the documented `hashes`/`hash_idx` attributes here, because the
library's own boilerplate path (np.intersect1d with assume_unique on fingerprints that repeat in a file)
also drops one occurrence of every repeated fingerprint.

COURSE/similarity/ receives pairs.csv (every pair: both shares, the shared size, flagged yes/no) and report.md
(the flagged pairs with each side's matching lines, then the class's distribution).
"""

import csv
import io
import itertools
from dataclasses import dataclass
from pathlib import Path

from grading.errors import GradingError
from grading.publish.release import shipped_files, template_of
from grading.regrade import submissions
from grading.regrade.submissions import MODEL_FILES

# The defaults come from a corpus (tests/instructor/similarity_corpus.py, INSTRUCTOR.md section 9): disguised
# copies of each student function (locals renamed, independent statements swapped) reach a similarity of 0.58
# at least and share 34 characters of tokens at least; independent correct solutions (the mutant corpus's
# alternatives) reach 0.41. The threshold sits between; the minimum asks for more than one fingerprint.
NOISE = 25  # k: characters of filtered tokens in a fingerprint (copydetect's default noise threshold)
THRESHOLD = 0.5
MIN_SHARED = 30


class SimilarityError(GradingError):
    """The report cannot be made: one line per problem."""


def fingerprint(path: str, text: str, boilerplate: set, k: int = NOISE):
    """The copydetect fingerprint of one file's text with the boilerplate's fingerprints removed."""
    from copydetect import CodeFingerprint
    from copydetect.utils import get_token_coverage

    print_ = CodeFingerprint(Path(path).name, k, 1, fp=io.StringIO(text))
    for value in print_.hashes & boilerplate:
        del print_.hash_idx[value]
    print_.hashes -= boilerplate
    print_.token_coverage = get_token_coverage(print_.hash_idx, k, len(print_.filtered_code))
    return print_


def boilerplate_hashes(texts: list[tuple[str, str]], k: int = NOISE) -> set:
    """Every fingerprint of the starter code and the reference solution ((path, text) pairs)."""
    from copydetect import CodeFingerprint

    found = set()
    for path, text in texts:
        found |= CodeFingerprint(Path(path).name, k, 1, fp=io.StringIO(text)).hashes
    return found


def line_ranges(text: str, slices) -> list[tuple[int, int]]:
    """1-based (first, last) line numbers of each (start, end) character slice of `text`, merged."""
    starts = [0] + [index + 1 for index, char in enumerate(text) if char == "\n"]

    def line_of(offset):
        low, high = 0, len(starts) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        return low + 1

    ranges = []
    for start, end in sorted(zip(slices[0], slices[1])):
        first, last = line_of(int(start)), line_of(max(int(start), int(end) - 1))
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], last))
        else:
            ranges.append((first, last))
    return ranges


@dataclass
class Pair:
    a: str
    b: str
    share_a: float  # of a's own code, the part b has too
    share_b: float
    shared: int  # characters of filtered tokens a shares with b
    own_a: int
    own_b: int
    lines: dict  # path -> (a's line ranges, b's line ranges)
    flagged: bool = False

    @property
    def similarity(self) -> float:
        return max(self.share_a, self.share_b)


def compare(a: str, b: str, prints_a: dict, prints_b: dict, texts_a: dict, texts_b: dict) -> Pair:
    from copydetect import compare_files

    shared_a = shared_b = own_a = own_b = 0
    lines = {}
    for path in MODEL_FILES:
        fa, fb = prints_a.get(path), prints_b.get(path)
        own_a += fa.token_coverage if fa else 0
        own_b += fb.token_coverage if fb else 0
        if not fa or not fb or not fa.hashes or not fb.hashes:
            continue
        overlap, _, (slices_a, slices_b) = compare_files(fa, fb)
        if not overlap:
            continue
        # compare_files's slice lengths are in filtered tokens before it maps them to the original text
        shared_a += len(overlap_positions(fa, fb))
        shared_b += len(overlap_positions(fb, fa))
        lines[path] = (line_ranges(texts_a[path], slices_a), line_ranges(texts_b[path], slices_b))
    return Pair(a, b, shared_a / own_a if own_a else 0.0, shared_b / own_b if own_b else 0.0,
                max(shared_a, shared_b), int(own_a), int(own_b), lines)


def overlap_positions(this, other) -> set:
    """The positions of `this` file's filtered code that a fingerprint shared with `other` covers."""
    covered = set()
    for value in this.hashes & other.hashes:
        for index in this.hash_idx[value]:
            covered.update(range(int(index), int(index) + this.k))
    return covered


def own_files(path: Path, ref: str = "HEAD") -> tuple[dict, str]:
    """The model files of a submission at `ref` as text, and why there are none (empty if there are)."""
    submission = submissions.read(path, ref)
    if submission.problem:
        return {}, submission.problem
    return ({name: submission.files[name].decode("utf-8", errors="replace") for name in MODEL_FILES
             if name in submission.files}, "")


def analyse(texts: dict[str, dict], boilerplate: set, threshold: float = THRESHOLD, min_shared: int = MIN_SHARED,
            k: int = NOISE) -> list[Pair]:
    """Every pair of students (name -> path -> text), most similar first."""
    prints = {name: {path: fingerprint(path, text, boilerplate, k) for path, text in files.items()}
              for name, files in texts.items()}
    pairs = [compare(a, b, prints[a], prints[b], texts[a], texts[b]) for a, b in itertools.combinations(sorted(texts), 2)]
    for pair in pairs:
        pair.flagged = pair.similarity >= threshold and pair.shared >= min_shared
    return sorted(pairs, key=lambda pair: (-pair.similarity, pair.a, pair.b))


def fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in `text`."""
    run = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        run = max(run, current)
    return "`" * max(3, run + 1)


def excerpt(text: str, first: int, last: int) -> str:
    lines = text.splitlines()
    body = "\n".join(f"{number:4d}  {lines[number - 1]}" for number in range(first, min(last, len(lines)) + 1))
    marker = fence(body)
    return f"{marker}\n{body}\n{marker}"


def report(pairs: list[Pair], texts: dict, skipped: dict, threshold: float, min_shared: int) -> str:
    flagged = [pair for pair in pairs if pair.flagged]
    lines = ["# Similarity of the students' own code", "",
             f"{len(texts)} submissions, {len(pairs)} pairs; starter code and reference solution removed. A pair is "
             f"flagged when one side shares at least {threshold:.0%} of its own code with the other, and at least "
             f"{min_shared} characters of tokens. Similar code is a reason to read both, not a finding.", ""]
    for name, why in sorted(skipped.items()):
        lines.append(f"- {name}: not compared ({why})")
    lines += ["", f"## Flagged pairs ({len(flagged)})", ""] if flagged else ["", "## No pair is flagged", ""]
    for pair in flagged:
        lines += [f"### {pair.a} and {pair.b}: {pair.share_a:.0%} of {pair.a}'s own code, {pair.share_b:.0%} of "
                  f"{pair.b}'s", "", f"Own code: {pair.a} {pair.own_a}, {pair.b} {pair.own_b} characters of tokens; "
                  f"shared {pair.shared}.", ""]
        for path, (ranges_a, ranges_b) in pair.lines.items():
            lines += [f"#### `{path}`", "",
                      f"{pair.a}, lines {', '.join(f'{a}–{b}' for a, b in ranges_a)}; {pair.b}, lines "
                      f"{', '.join(f'{a}–{b}' for a, b in ranges_b)}", ""]
            for name, ranges in ((pair.a, ranges_a), (pair.b, ranges_b)):
                lines.append(f"{name}:")
                lines.append("")
                for first, last in ranges:
                    lines += [excerpt(texts[name][path], first, last), ""]
    lines += ["## Every pair", "", "| a | b | share of a | share of b | shared | flagged |",
              "| --- | --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {pair.a} | {pair.b} | {pair.share_a:.2f} | {pair.share_b:.2f} | {pair.shared} | "
              f"{'yes' if pair.flagged else ''} |" for pair in pairs]
    return "\n".join(lines) + "\n"


def starter_code(repo: Path) -> list[tuple[str, str]]:
    """(path, text) of the model files every submission starts from or may have seen: the template's stubs and
    the reference solution of the instructor's repository `repo`. Their fingerprints are not the students' own."""
    template = template_of(shipped_files(repo))
    return ([(path, template[path][0].decode()) for path in MODEL_FILES]
            + [(path, (repo / path).read_text(encoding="utf-8")) for path in MODEL_FILES])


def run(paths: list[Path], starter: list[tuple[str, str]], out: Path, ref: str = "HEAD", threshold: float = THRESHOLD,
        min_shared: int = MIN_SHARED, k: int = NOISE, log=print) -> list[Pair]:
    texts, skipped = {}, {}
    for path in paths:
        files, why = own_files(path, ref)
        name = submissions.submission_name(path)
        if why or not files:
            skipped[name] = why or "no model file"
        else:
            texts[name] = files
    pairs = analyse(texts, boilerplate_hashes(starter, k), threshold, min_shared, k)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "pairs.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student_a", "student_b", "similarity", "share_a", "share_b", "shared", "own_a", "own_b",
                         "flagged"])
        for pair in pairs:
            writer.writerow([pair.a, pair.b, f"{pair.similarity:.2f}", f"{pair.share_a:.2f}", f"{pair.share_b:.2f}",
                             pair.shared, pair.own_a, pair.own_b, "yes" if pair.flagged else "no"])
    (out / "report.md").write_text(report(pairs, texts, skipped, threshold, min_shared), encoding="utf-8")
    for pair in pairs:
        if pair.flagged:
            log(f"{pair.a} and {pair.b}: {pair.share_a:.0%} / {pair.share_b:.0%} of their own code alike "
                f"({pair.shared} characters of tokens)")
    log(f"{sum(pair.flagged for pair in pairs)} of {len(pairs)} pairs flagged: {out / 'report.md'}")
    return pairs
