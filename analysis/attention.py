"""The Transformer's attention on one word: bertviz views (in a notebook and as HTML files), heatmaps.

    python -m analysis.attention runs/transformer_small_h64 --out assets/
    python -m analysis.attention runs/transformer_small_h64 --out assets/ --screenshots

writes, for each word (default: brown, conditioning, is), `attention_<word>_head_view.html` and
`attention_<word>_model_view.html` (open them in a browser: they load their JavaScript from a CDN) and
`attention_<word>.png` (every layer and head of the three attentions, as heatmaps for the writeup).
`--screenshots` also renders the first word's views in headless Chromium into
`bertviz_head_view.png` and `bertviz_model_view.png` (it needs requirements-optional.txt,
`npm ci` and Chromium).
"""

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from data.vocab import VOCAB
from models.decoding import decode_budget, eval_mode, greedy_decode, with_sos

WORDS = ("brown", "conditioning", "is")
KINDS = {"encoder": "encoder self-attention", "decoder": "decoder self-attention", "cross": "cross-attention"}


@dataclass
class AttentionMaps:
    """What a Transformer attended to while translating `word` into `translation` (its own greedy output).

    Each list holds one tensor per layer, (1, h, query length, key length) as bertviz wants them:
    encoder (1, h, S, S), decoder (1, h, T, T), cross (1, h, T, S), with T = len(translation) + 1
    (the decoder reads SOS, then the translation).
    """

    word: str
    translation: str
    encoder_tokens: list
    decoder_tokens: list
    encoder: list
    decoder: list
    cross: list


def attention_maps(model, word: str) -> AttentionMaps:
    """Translates `word` greedily, then reruns the translation in one pass to collect every attention."""
    source = torch.tensor([VOCAB.encode(word)])  # (1, S)
    with eval_mode(model), torch.no_grad():
        tokens = greedy_decode(model, source, decode_budget(len(word), model.max_length))
        translation = VOCAB.decode(tokens[0])
        model(source, with_sos(torch.tensor([VOCAB.encode(translation)], dtype=torch.long)))
    maps = model.attention_maps()
    return AttentionMaps(word, translation, list(word), ["<SOS>", *translation],
                         maps["encoder"], maps["decoder"], maps["cross"])


def bertviz_arguments(maps: AttentionMaps, kinds=tuple(KINDS)) -> dict:
    """The keyword arguments of bertviz's head_view/model_view for the chosen attentions."""
    arguments = {}
    if "encoder" in kinds:
        arguments.update(encoder_attention=maps.encoder, encoder_tokens=maps.encoder_tokens)
    if "decoder" in kinds:
        arguments.update(decoder_attention=maps.decoder, decoder_tokens=maps.decoder_tokens)
    if "cross" in kinds:
        arguments.update(cross_attention=maps.cross, encoder_tokens=maps.encoder_tokens,
                         decoder_tokens=maps.decoder_tokens)
    return arguments


def show(maps: AttentionMaps, view: str = "head", kinds=tuple(KINDS)):
    """Draws bertviz's head view or model view in the notebook (the dropdown picks the attention)."""
    from bertviz import head_view, model_view

    if view == "head":
        head_view(**bertviz_arguments(maps, kinds))
    else:
        model_view(**bertviz_arguments(maps, kinds), display_mode="light")


def view_html(maps: AttentionMaps, view: str = "head", kinds=tuple(KINDS), layer: int = None) -> str:
    """A standalone HTML page of bertviz's `view` ('head' or 'model') for the chosen attentions; the head
    view opens on `layer` (default: the first)."""
    from bertviz import head_view, model_view

    if view == "head":
        body = head_view(**bertviz_arguments(maps, kinds), layer=layer, html_action="return").data
    else:
        body = model_view(**bertviz_arguments(maps, kinds), display_mode="light", html_action="return").data
    title = f"{view} view: {maps.word} -> {maps.translation} ({', '.join(KINDS[kind] for kind in kinds)})"
    return (f'<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"><title>{title}</title></head>\n'
            f"<body>\n<p>{title}</p>\n{body}\n</body>\n</html>\n")


def write_views(maps: AttentionMaps, out_dir: Path) -> list:
    """Writes the head view and the model view of all three attentions; returns the two paths."""
    paths = []
    for view in ("head", "model"):
        path = Path(out_dir) / f"attention_{maps.word}_{view}_view.html"
        path.write_text(view_html(maps, view), encoding="utf-8")
        paths.append(path)
    return paths


def plot_heatmaps(maps: AttentionMaps):
    """One row per (attention, layer), one column per head: query characters down, key characters across."""
    import matplotlib.pyplot as plt

    rows = [(kind, layer, weights[0]) for kind in KINDS for layer, weights in enumerate(getattr(maps, kind))]
    heads = rows[0][2].shape[0]
    figure, axes = plt.subplots(len(rows), heads, figsize=(1.6 * heads + 1, 1.7 * len(rows)), squeeze=False)
    for number, ((kind, layer, weights), row) in enumerate(zip(rows, axes)):
        queries = maps.encoder_tokens if kind == "encoder" else maps.decoder_tokens
        keys = maps.decoder_tokens if kind == "decoder" else maps.encoder_tokens
        for head, ax in enumerate(row):
            ax.imshow(weights[head].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(keys)), [token.strip("<>")[:3] for token in keys], fontsize=6)
            ax.set_yticks(range(len(queries)), [token.strip("<>")[:3] for token in queries], fontsize=6)
            ax.tick_params(length=0)
            if head == 0:
                ax.set_ylabel(f"{KINDS[kind]}\nlayer {layer}", fontsize=7)
            if number == 0:
                ax.set_title(f"head {head}", fontsize=8)
    figure.suptitle(f"{maps.word} → {maps.translation}")
    figure.tight_layout()
    return figure


def screenshot_views(maps: AttentionMaps, out_dir: Path) -> list:
    """bertviz_head_view.png (last layer) and bertviz_model_view.png of the cross-attention in `maps`,
    rendered offline in headless Chromium."""
    from tests.browser import missing_requirement, open_page

    if reason := missing_requirement():
        raise RuntimeError(reason)
    paths = []
    for view, width in (("head", 400), ("model", 1000)):
        with open_page(width=width, height=900) as page:
            page_file = Path(out_dir) / f".bertviz_{view}_view.html"
            page_file.write_text(view_html(maps, view, kinds=("cross",), layer=len(maps.cross) - 1), encoding="utf-8")
            try:
                page.goto(page_file.as_uri())
                page.wait_for_selector("svg line", state="attached", timeout=15_000)
                page.wait_for_timeout(500)  # let bertviz's fade-in finish
                if page.problems:
                    raise RuntimeError(f"the {view} view did not render cleanly: {page.problems[0]}")
                path = Path(out_dir) / f"bertviz_{view}_view.png"
                page.locator("div[id^=bertviz]").screenshot(path=str(path))
                paths.append(path)
            finally:
                page_file.unlink()
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a Transformer run directory (or its .ckpt)")
    parser.add_argument("--words", nargs="+", default=list(WORDS), help="words to translate and draw")
    parser.add_argument("--out", default="assets", help="folder for the HTML and PNG files")
    parser.add_argument("--screenshots", action="store_true", help="render bertviz screenshots in Chromium")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from main import UsageError, load_checkpoint

    try:
        module = load_checkpoint(args.run)
    except UsageError as error:
        print(f"analysis.attention: error: {error}", file=sys.stderr)
        return 2
    if module.config.model != "transformer":
        print(f"analysis.attention: error: {args.run} holds a {module.config.model}; attention maps need a "
              "Transformer run", file=sys.stderr)
        return 2
    for word in args.words:
        if not re.fullmatch(r"[a-z]+(-[a-z]+)*", word):
            print(f"analysis.attention: error: cannot translate {word!r}: use letters a-z and '-'", file=sys.stderr)
            return 2
    from bench.measure import writable_folder

    out = writable_folder("python -m analysis.attention", args.out)
    all_maps = [attention_maps(module.model, word) for word in args.words]
    for maps in all_maps:
        written = write_views(maps, out)
        figure = plot_heatmaps(maps)
        figure.savefig(out / f"attention_{maps.word}.png", dpi=120)
        plt.close(figure)
        print(f"{maps.word} -> {maps.translation}: {', '.join(str(path) for path in written)}, "
              f"{out / f'attention_{maps.word}.png'}")
    if args.screenshots:
        try:
            for path in screenshot_views(all_maps[0], out):
                print(f"screenshot: {path}")
        except RuntimeError as error:  # no Chromium, Playwright or npm files; a view that did not draw
            print(f"analysis.attention: error: no screenshots: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
