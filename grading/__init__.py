"""Instructor-only tools: release the student template and the hidden solution, and the mutant corpus
that proves the graded tests can fail. Never shipped to students (see grading.template.INSTRUCTOR_ONLY).

    python -m grading release OUT      the two-branch repository: main = template, solution = reference
    python -m grading regrade SUBMISSION... --out DIR   the grade of record: public + hidden tests, sandboxed
    python -m grading review SUBMISSION... --out DIR    the writeups beside grades and feedback, as a site
    python -m grading mutants          which graded tests catch each plausible student mistake
"""
