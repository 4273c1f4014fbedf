"""Instructor-only tools: release the student template and the hidden solution, and the mutant corpus
that proves the graded tests can fail. Never shipped to students (see grading.publish.template.INSTRUCTOR_ONLY).

    python -m grading release OUT      the two-branch repository: main = template, solution = reference
    python -m grading regrade SUBMISSION... --out DIR   the tests' grade: public + hidden tests, sandboxed
    python -m grading review SUBMISSION... --out DIR    the writeups beside grades and feedback, as a site
                                                        (--course COURSE: the grade of record and its parts)
    python -m grading mutants          which graded tests catch each plausible student mistake

The course, from a folder COURSE holding roster.csv (INSTRUCTOR.md, section 8):
    python -m grading rubric           check grading/course/rubric.toml and the README's points
    python -m grading collect COURSE --deadline WHEN   fetch the roster's repositories, with lateness
    python -m grading scores COURSE    the scores files of the items graded by hand
    python -m grading similarity COURSE   pairs of submissions whose own code is alike
    python -m grading gradebook COURSE    the grade of record and feedback: COURSE/final
    python -m grading request COURSE STUDENT ITEM TEXT   note a regrade request
    python -m grading export COURSE    Canvas's gradebook CSV
    python -m grading feedback COURSE --push   FEEDBACK.md on each student's branch feedback
"""
