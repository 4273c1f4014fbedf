"""The one kind of error the grading tools report: something they refuse to do, and why, in words for the
instructor (one line per problem; never a traceback). Each module raises its own kind, named for what failed
(RosterError, RubricError, GitError, ...); `python -m grading` catches them all as GradingError, once."""


class GradingError(Exception):
    """A refusal: what is wrong, one line per problem, each saying what to do where it can."""
