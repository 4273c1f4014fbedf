"""The similarity report's defaults, on the corpus they were chosen from (tests/instructor/similarity_corpus.py):
every disguised copy of every student function is flagged, no pair of independent correct solutions is, and
the threshold is not a hair's breadth from either. (Instructor-only; about fifteen seconds.)"""

import pytest

from grading.course import similarity
from grading.publish.mutants import ALTERNATIVES
from similarity_corpus import NEAR_REFERENCE, corpus, figures, reordered, renamed

MARGIN = 0.05  # of similarity, between the threshold and the nearest copy or independent pair


@pytest.fixture(scope="module")
def found():
    return figures()


def test_the_corpus_holds_a_renamed_copy_of_every_student_function_and_a_reordered_one_where_lines_can_move():
    _, copies, independent_pairs = corpus()
    targets = {variant.target for variant in ALTERNATIVES}
    assert len([pair for pair in copies if pair[1].endswith(" renamed")]) == len(targets) == 15
    assert len([pair for pair in copies if pair[1].endswith(" reordered")]) == 5
    independent = len(ALTERNATIVES) - len(NEAR_REFERENCE)
    assert len(independent_pairs) == (independent + 1) * independent // 2


def test_a_copy_is_disguised_by_renaming_and_reordering_but_stays_the_same_function():
    source = '''
    def forward(self, x):
        first = self.a(x)
        second = self.b(x)
        return first + second
    '''
    assert renamed(source).splitlines()[1:] == ["    my_first_0 = self.a(x)", "    my_second_1 = self.b(x)",
                                               "    return my_first_0 + my_second_1"]
    assert reordered(source).splitlines()[1:3] == ["    my_second_1 = self.b(x)", "    my_first_0 = self.a(x)"]


def test_every_disguised_copy_of_every_student_function_is_flagged_with_the_defaults(found):
    pairs, copies, _ = found
    missed = [f"{b}: similarity {pairs[a, b].similarity:.2f}, shared {pairs[a, b].shared}" for a, b in copies
              if not pairs[a, b].flagged]
    assert missed == []
    assert min(pairs[pair].similarity for pair in copies) >= similarity.THRESHOLD + MARGIN


def test_no_two_independent_correct_solutions_are_flagged_with_the_defaults(found):
    pairs, _, independent_pairs = found
    flagged = [pair for pair in independent_pairs if pairs[pair].flagged]
    assert flagged == []
    assert max(pairs[pair].similarity for pair in independent_pairs) <= similarity.THRESHOLD - MARGIN
