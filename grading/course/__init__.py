"""Running the course: the roster and collection at the deadline (roster), the rubric (rubric), the
scores of hand-graded items (scores), similarity (similarity), the final grade (gradebook), grades out to
the LMS and to students (export), and the review site (review)."""
