"""bertviz's views of our attention really draw, as a person would see them: the exported HTML rendered
offline in headless Chromium (tests/browser.py), for the head view and the model view of the encoder
self-attention, the decoder self-attention and the cross-attention."""

import pytest
import torch

from analysis.attention import KINDS, attention_maps, view_html
from models import TransformerSeq2Seq
from tests.browser import open_page

HEADS, LAYERS = 2, 2

pytestmark = pytest.mark.needs_solution  # the maps come from the student's attention


@pytest.fixture(scope="module")
def maps():
    """The attention of an untrained model on 'brown': random weights draw lines as well as trained ones."""
    torch.manual_seed(0)
    model = TransformerSeq2Seq(29, hidden_size=16, num_heads=HEADS, num_encoder_layers=LAYERS,
                               num_decoder_layers=LAYERS)
    return attention_maps(model, "brown")


@pytest.fixture(scope="module")
def page():
    with open_page() as page:
        yield page


def expected_lines(maps, view: str, kind: str) -> int:
    """bertviz draws one line per (head, query, key): the head view for one layer, the model view for all."""
    queries, keys = getattr(maps, kind)[0].shape[-2:]
    return (1 if view == "head" else LAYERS) * HEADS * queries * keys


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("view", ["head", "model"])
def test_view_draws_a_line_for_every_head_query_and_key(view, kind, maps, page, tmp_path):
    path = tmp_path / f"{view}_{kind}.html"
    path.write_text(view_html(maps, view, kinds=(kind,)), encoding="utf-8")
    page.problems.clear()
    page.goto(path.as_uri())
    page.wait_for_selector("svg line", state="attached", timeout=15_000)  # the first lines may be faint
    assert page.problems == [], f"the {view} view of the {KINDS[kind]} did not render cleanly: {page.problems}"
    lines = page.locator("svg line").count()
    assert lines == expected_lines(maps, view, kind), (
        f"the {view} view of the {KINDS[kind]} drew {lines} lines, expected {expected_lines(maps, view, kind)}")
    if view == "head":  # the model view's thumbnails carry no labels
        tokens = {"encoder": maps.encoder_tokens, "decoder": maps.decoder_tokens,
                  "cross": maps.decoder_tokens + maps.encoder_tokens}[kind]
        shown = page.locator("svg text").all_text_contents()
        assert set(tokens) <= set(shown), f"the head view of the {KINDS[kind]} should label {tokens}, shows {shown}"
