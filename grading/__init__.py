"""The instructor's tools, never shipped to students (grading/publish/template.py: INSTRUCTOR_ONLY). One
folder per part of the year, one command per step (`python -m grading` lists them in a course's order;
INSTRUCTOR.md is the guide):

    publish/   what students receive: the template and the hidden solution (release), and the mutant corpus
               that proves the graded tests fail wrong code (mutants, run by corpus)
    regrade/   where a submission is judged: read from git, run in a sandbox, judged outside it: the tests'
               grade (regrade; the graded-test framework it judges with is the package autograde/)
    course/    the class, from a course folder (INSTRUCTOR.md, section 9): roster and collection, rubric,
               scores, similarity, the grade of record (gradebook), grades out to the LMS (export) and to the
               students (feedback), the review site (review)

errors.py holds the one error every command reports (GradingError), git.py the one way they run git.
"""
