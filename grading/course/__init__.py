"""Running the course (INSTRUCTOR.md, section 9), one module per command: the class (roster), the commits to
grade and their lateness (collect), what everything is worth (rubric), the items graded by hand and regrade
requests (scores), similar code (similarity), the grade of record (gradebook), grades out to the LMS (export)
and to the students (feedback), and every writeup beside its grade (review).

A course folder, COURSE, holds the instructor's roster.csv and everything the commands write:

    COURSE/roster.csv             student,repository[,name,canvas_id,sis_user_id,sis_login_id,section,extension_days]
    COURSE/collected.json         the deadline, and per student every fetch: when, and the commit the branch was at
    COURSE/submissions/<s>.git    a bare copy of each repository; HEAD is the branch `submitted`: the commit to grade
    COURSE/grades/                python -m grading regrade COURSE/submissions/* --out COURSE/grades
    COURSE/scores/<s>.toml        the rubric items graded by hand (python -m grading scores), regrade requests
    COURSE/similarity/            python -m grading similarity
    COURSE/final/                 the grade of record, feedback, the Canvas file (gradebook, export, feedback)
"""
