"""What the models learned about characters and positions: embeddings in 2-D, positions as similarities.

The 29 character embeddings (V, H) are projected to 2-D with PCA (linear: distances along the axes mean
something) and t-SNE (non-linear: only neighbourhoods mean something), coloured by what the Pig-Latin
rule cares about. Positional encodings are compared as cosine-similarity matrices (L, L): how alike
the code of position i is to that of position j.
"""

import torch
import torch.nn.functional as F

from data.vocab import VOCAB

# What the rule tells apart: a, e, i, o, u start "way" words; y is a vowel only for where the split falls;
# the other letters are consonants; the rest are not letters.
GROUPS = {"vowel (a e i o u)": set("aeiou"), "y": {"y"}, "consonant": set("bcdfghjklmnpqrstvwxz"),
          "special": {"-", "<SOS>", "<EOS>"}}


def group_of(token: str) -> str:
    return next(group for group, members in GROUPS.items() if token in members)


def character_embeddings(model) -> dict:
    """name -> embedding table (V, H) of every character embedding a model has."""
    if hasattr(model, "encoder"):  # TransformerSeq2Seq: the source and the target side each have one
        return {"source (encoder)": model.encoder.embedding.weight.detach(),
                "target (decoder)": model.decoder.embedding.weight.detach()}
    return {"source and target": model.mamba.embedding.weight.detach()}  # one sequence, one table


def project(table: torch.Tensor, method: str = "pca", seed: int = 0):
    """(V, H) -> (V, 2) numpy array, by 'pca' or 'tsne' (seeded: the same picture every time)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    points = table.float().numpy()
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(points)
    # perplexity is about how many neighbours each point weighs: with 29 points, a handful
    return TSNE(n_components=2, perplexity=8, init="pca", random_state=seed).fit_transform(points)


def plot_embeddings(ax, points, title: str):
    """Scatters the (V, 2) points on `ax`, each labelled with its character and coloured by its group."""
    for number, group in enumerate(GROUPS):
        members = [i for i, token in enumerate(VOCAB.tokens) if group_of(token) == group]
        ax.scatter(points[members, 0], points[members, 1], color=f"C{number}", label=group, s=25)
    for (x, y), token in zip(points, VOCAB.tokens):
        ax.annotate(token.strip("<>"), (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_all_embeddings(models: dict):
    """A grid: one row per embedding table of `models` (name -> model), PCA left and t-SNE right."""
    import matplotlib.pyplot as plt

    tables = [(f"{name} {side}", table) for name, model in models.items()
              for side, table in character_embeddings(model).items()]
    figure, axes = plt.subplots(len(tables), 2, figsize=(10, 4.2 * len(tables)), squeeze=False)
    for (name, table), (pca_axis, tsne_axis) in zip(tables, axes):
        plot_embeddings(pca_axis, project(table, "pca"), f"{name} embeddings, PCA")
        plot_embeddings(tsne_axis, project(table, "tsne"), f"{name} embeddings, t-SNE")
    axes[0, 0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def position_similarity(table: torch.Tensor) -> torch.Tensor:
    """(L, H) positional codes -> (L, L) cosine similarity of every pair of positions."""
    unit = F.normalize(table.detach().float(), dim=-1)
    return unit @ unit.T


def positional_tables(model, length: int) -> dict:
    """name -> (length, H) positional codes of a Transformer: each side's table, sinusoidal or learned."""
    return {f"{side} ({getattr(model, side).positions.kind})": getattr(model, side).positions.table[:length]
            for side in ("encoder", "decoder")}


def plot_position_similarity(tables: dict):
    """One heatmap per (L, H) table of `tables` (name -> table), on one colour scale."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 4), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        image = ax.imshow(position_similarity(table).numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set(title=name, xlabel="position", ylabel="position")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="cosine similarity")
    return figure
