"""Publishing the assignment: the student template and the hidden solution branch (template, release),
and the mutant corpus that proves the graded tests can fail before anyone is graded."""
