"""The grade of record for the tests: read each submission from git (submissions), run its code in a
sandbox (sandbox), judge what comes back outside it (judge), flag code worth the instructor's look (flags),
write the results (results); run.py ties them together for a class."""
