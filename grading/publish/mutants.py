"""Proof that the graded tests can fail, and that they fail only wrong code.

A *mutant* is the reference solution of one student function with one plausible mistake (a text
replacement on its source, or a whole new body); every mutant must lose points. An *alternative* is a
different but correct way to write one graded function (other einsum spellings, view/transpose for
rearrange, a -1e9 mask, a doubling scan, ...); every alternative must keep all 10 public points and all the
points of the hidden tests (tests/hidden, run by the regrade). A *hidden-only mutant* is a mistake the
public tests cannot see because it fits their sizes (a kernel of 4 or a dt_rank of 1 hard-coded): it must
keep all 10 public points and lose hidden ones, which proves the hidden tests add something.

Every mutant is labelled with its causes, in the words of autograde/diagnoses.py: a diagnosis rule may name
only a cause its mutant has (tests/instructor/test_diagnoses.py). grading/publish/corpus.py runs them all:

    python -m grading mutants        prints which graded tests catch each mutant, and the diagnoses' precision
"""

import importlib
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GRADED, HIDDEN = REPO / "tests" / "graded", REPO / "tests" / "hidden"
# student module -> its question's test files: the public graded tests, then the hidden ones
QUESTION_FILES = {
    "models.transformer": (GRADED / "test_q1_transformer.py", HIDDEN / "test_q1_hidden.py"),
    "models.mamba": (GRADED / "test_q2_ssm.py", HIDDEN / "test_q2_hidden.py"),
}


@dataclass(frozen=True)
class Variant:
    """A replacement for the student function `target` ("module:Qualified.name")."""

    name: str
    target: str
    why: str
    replace: tuple = ()  # (old, new) pairs applied to the reference source, each old occurring once
    source: str = ""  # or the whole function
    causes: tuple = ()  # a mutant's causes, as autograde/diagnoses.py names them: the only ones a rule may name

    def function_source(self) -> str:
        if self.source:
            return textwrap.dedent(self.source)
        text = textwrap.dedent(inspect.getsource(_resolve(self.target)[2]))
        for old, new in self.replace:
            if text.count(old) != 1:
                raise ValueError(f"mutant {self.name}: {old!r} occurs {text.count(old)} times in {self.target}")
            text = text.replace(old, new)
        return text


def _resolve(target: str):
    """(module, owner, function) of "module:Class.method" or "module:function"."""
    module_name, qualname = target.split(":")
    module = importlib.import_module(module_name)
    owner = module
    for part in qualname.split(".")[:-1]:
        owner = getattr(owner, part)
    return module, owner, getattr(owner, qualname.split(".")[-1])


def M(name, target, why, causes=(), *replace, source=""):
    """A mutant (labelled with its causes) or, with no causes, a correct alternative."""
    return Variant(name, target, why, tuple(replace), source, tuple(causes))


T, S = "models.transformer", "models.mamba"
MHA = f"{T}:MultiHeadAttention.forward"

MUTANTS = [
    # --- Q1.1 attention
    M("no-scaling", MHA, "scores not divided by √d", ("scale",), (" / math.sqrt(self.head_size)", "")),
    M("scaled-by-hidden-size", MHA, "divided by √H instead of √d (the head size)", ("scale",),
      ("math.sqrt(self.head_size)", "math.sqrt(self.hidden_size)")),
    M("mask-on-the-wrong-side", f"{T}:causal_mask", "upper triangle: attends to the future, not the past", ("mask-side", "transposed"),
      ("torch.tril(", "torch.triu(")),
    M("mask-hides-the-present", f"{T}:causal_mask", "off by one: a position may not see itself", ("mask-off-by-one",),
      ("device=device))", "device=device), diagonal=-1)")),
    M("mask-shows-the-next-token", f"{T}:causal_mask", "off by one: a position sees one future token", ("mask-off-by-one",),
      ("device=device))", "device=device), diagonal=1)")),
    M("mask-applied-inverted", MHA, "masked_fill on the allowed positions instead of the future ones",
      ("mask-side", "causal"), ("masked_fill(~mask,", "masked_fill(mask,")),
    M("mask-made-but-not-applied", MHA, "the causal mask is built and never used: every position sees the future",
      ("mask-missing", "causal"), ("scores = scores.masked_fill(~mask, float(\"-inf\"))", "scores = scores")),
    M("softmax-over-queries", MHA, "softmax over the wrong axis", ("softmax-axis", "causal"), ("softmax(dim=-1)", "softmax(dim=-2)")),
    M("weights-kept-before-softmax", MHA, "stores the scores, not the softmax weights", ("wrong-reading",),
      ("self.attention_weights = weights.detach()", "self.attention_weights = scores.detach()")),
    M("no-output-projection", MHA, "forgets W_o", ("missing-step",),
      ("return self.W_o(self.merge_heads(context))", "return self.merge_heads(context)")),
    M("heads-merged-in-the-wrong-order", f"{T}:MultiHeadAttention.merge_heads", "(d h) instead of (h d)", ("heads-order",),
      ('"b h l d -> b l (h d)"', '"b h l d -> b l (d h)"')),
    M("heads-split-in-the-wrong-order", f"{T}:MultiHeadAttention.split_heads", "(d h) instead of (h d)", ("heads-order",),
      ('"b l (h d) -> b h l d"', '"b l (d h) -> b h l d"')),
    # --- Q1.2 encoder
    M("sin-and-cos-swapped", f"{T}:sinusoidal_positional_encoding", "cos on even columns, sin on odd", ("sin-cos",),
      ("table[:, 0::2] = torch.sin(angle)", "table[:, 0::2] = torch.cos(angle)"),
      ("table[:, 1::2] = torch.cos(angle[", "table[:, 1::2] = torch.sin(angle[")),
    M("exponent-i-instead-of-2i", f"{T}:sinusoidal_positional_encoding", "10000^(i/H) instead of 10000^(2i/H)", ("exponent",),
      ("torch.arange(0, hidden_size, 2, dtype=torch.float32)", "torch.arange(0, hidden_size // 2, dtype=torch.float32)")),
    M("encoder-positions-not-added", f"{T}:TransformerEncoder.forward", "embeddings only", ("missing-step",),
      ("self.positions(self.embedding(source))", "self.embedding(source)")),
    M("encoder-without-final-norm", f"{T}:TransformerEncoder.forward", "no final LayerNorm", ("missing-step",),
      ("return self.norm(x)", "return x")),
    M("encoder-post-norm", f"{T}:EncoderLayer.forward", "norm(x + sublayer(x)) instead of x + sublayer(norm(x))", ("norms",),
      source='''
      def forward(self, x):
          x = self.attention_norm(x + self.dropout(self.self_attention(x, x, x)))
          return self.feed_forward_norm(x + self.feed_forward(x))
      '''),
    M("encoder-mlp-without-residual", f"{T}:EncoderLayer.forward", "the MLP replaces x instead of adding to it", ("missing-step",),
      ("return x + self.feed_forward(", "return self.feed_forward(")),
    # --- Q1.3 decoder
    M("decoder-positions-not-added", f"{T}:TransformerDecoder.forward", "the original starter's bug", ("missing-step",),
      ("self.positions(self.embedding(target_in))", "self.embedding(target_in)")),
    M("decoder-self-attention-not-causal", f"{T}:DecoderLayer.forward", "uses the non-causal module for self-attention", ("wrong-module", "causal"),
      ("self.self_attention(normed, normed, normed)", "self.cross_attention(normed, normed, normed)")),
    M("cross-attention-over-the-decoder", f"{T}:DecoderLayer.forward", "keys and values from the decoder, not the encoder", ("wrong-input", "causal"),
      ("self.cross_attention(normed, annotations, annotations)", "self.cross_attention(normed, normed, normed)")),
    M("decoder-without-final-norm", f"{T}:TransformerDecoder.forward", "projects without the final LayerNorm", ("missing-step",),
      ("return self.output(self.norm(x))", "return self.output(x)")),
    # --- Q2.1 discretisation
    M("alpha-swapped", f"{S}:discretize_bilinear", "α and 1−α exchanged (invisible at α = ½)", ("alpha",),
      ("A_bar = (1 + alpha * delta_A)", "A_bar = (1 + (1 - alpha) * delta_A)"),
      ("denominator = 1 - (1 - alpha) * delta_A", "denominator = 1 - alpha * delta_A")),
    M("zero-order-hold-instead", f"{S}:discretize_bilinear", "Ā = exp(ΔA), B̄ = ΔB", ("zoh",),
      source='''
      def discretize_bilinear(delta, A, B, alpha=0.5):
          A_bar = torch.exp(einsum(delta, A, "b l e, e n -> b l e n"))
          return A_bar, einsum(delta, B, "b l e, b l n -> b l e n")
      '''),
    M("B-bar-without-denominator", f"{S}:discretize_bilinear", "B̄ = ΔB", ("missing-step", "zoh"),
      ('"b l e, b l n -> b l e n") / denominator', '"b l e, b l n -> b l e n")')),
    # --- Q2.2 parallel scan
    M("sign-lost-in-log", f"{S}:pscan", "log|b| without iπ for negative b", ("sign",),
      ("log_b = torch.log(b.to(complex_dtype))", "log_b = torch.log(b.abs()).to(complex_dtype)")),
    M("cumsum-off-by-one", f"{S}:pscan", "an exclusive cumulative sum of log a", ("off-by-one",),
      ("a_star = torch.cumsum(log_a, dim=1)", "a_star = torch.cumsum(log_a, dim=1) - log_a")),
    M("magnitude-instead-of-real-part", f"{S}:pscan", "|h| instead of Re h", ("sign",), (".real.to(b.dtype)", ".abs().to(b.dtype)")),
    M("pscan-calls-the-given-pair-scan", f"{S}:pscan", "hands the work to the given exact scan", ("given-scan",),
      source='''
      def pscan(log_a, b):
          return pair_scan(log_a, b)
      '''),
    M("pscan-calls-the-given-loop", f"{S}:pscan", "hands the work to the given sscan", ("given-scan",),
      source='''
      def pscan(log_a, b):
          return sscan(log_a, b)
      '''),
    M("pscan-is-a-loop", f"{S}:pscan", "a Python loop over time, not a parallel scan", ("loop",),
      source='''
      def pscan(log_a, b):
          a = torch.exp(log_a).real if log_a.is_complex() else torch.exp(log_a)
          h, out = torch.zeros_like(b[:, 0]), []
          for t in range(b.shape[1]):
              h = a[:, t] * h + b[:, t]
              out.append(h)
          return torch.stack(out, dim=1)
      '''),
    # --- Q2.3 Mamba block
    M("non-causal-convolution", f"{S}:MambaBlock.forward", "keeps the last L conv outputs: sees 3 future steps", ("causal",),
      ("self.conv1d(x)[..., :length]", "self.conv1d(x)[..., -length:]")),
    M("no-silu-after-convolution", f"{S}:MambaBlock.forward", "the convolution output goes to the SSM raw", ("missing-step",),
      ('x = F.silu(rearrange(x, "b e l -> b l e"))', 'x = rearrange(x, "b e l -> b l e")')),
    M("silu-gate-missing", f"{S}:MambaBlock.forward", "y instead of y · SiLU(z)", ("missing-step",),
      ("return self.out_proj(y * F.silu(z))", "return self.out_proj(y)")),
    M("gate-without-silu", f"{S}:MambaBlock.forward", "y · z instead of y · SiLU(z)", ("missing-step",),
      ("y * F.silu(z)", "y * z")),
    M("A-positive", f"{S}:MambaBlock.ssm", "A = exp(A_log): the state grows instead of decaying", ("A",),
      ("A = -torch.exp(self.A_log)", "A = torch.exp(self.A_log)")),
    M("delta-without-softplus", f"{S}:MambaBlock.ssm", "Δ = dt_proj(δ), possibly negative", ("missing-step",),
      ("delta = F.softplus(self.dt_proj(delta))", "delta = self.dt_proj(delta)")),
    M("B-and-C-swapped", f"{S}:MambaBlock.ssm", "x_proj's output split as δ, C, B", ("B-C",),
      ("delta, B, C = self.x_proj(x)", "delta, C, B = self.x_proj(x)")),
    M("D-skip-missing", f"{S}:MambaBlock.selective_scan", "y_t = C_t h_t without D u_t", ("missing-step",), ("return y + u * D", "return y")),
    M("input-not-in-b", f"{S}:MambaBlock.selective_scan", "b_t = B̄_t instead of B̄_t u_t", ("missing-step",),
      ('b = B_bar * rearrange(u, "b l e -> b l e 1")', "b = B_bar")),
    M("discretisation-ignored", f"{S}:MambaBlock.selective_scan", "always zero-order hold, whatever the config", ("configured-discretisation",),
      ("self.discretize(delta, A, B)", "discretize_zoh(delta, A, B)")),
    # --- the kinds of mistake an independent corpus found the graders missing (issue 11)
    M("dropout-on-in-eval-mode", MHA, "F.dropout with training=True: dropout stays on after model.eval()", ("dropout",),
      ("self.dropout(weights)", "F.dropout(weights, self.dropout.p, training=True)")),
    M("values-projected-from-the-key", MHA, "W_v applied to key, not value", ("wrong-input", "gradient"),
      ("self.split_heads(self.W_v(value))", "self.split_heads(self.W_v(key))")),
    M("encoder-layer-norms-exchanged", f"{T}:EncoderLayer.forward", "attention_norm before the MLP and vice versa", ("norms",),
      ("normed = self.attention_norm(x)", "normed = self.feed_forward_norm(x)"),
      ("self.feed_forward(self.feed_forward_norm(x))", "self.feed_forward(self.attention_norm(x))")),
    M("encoder-layer-one-norm-for-both", f"{T}:EncoderLayer.forward", "attention_norm used before the MLP too", ("norms",),
      ("self.feed_forward(self.feed_forward_norm(x))", "self.feed_forward(self.attention_norm(x))")),
    M("encoder-layer-dropout-in-eval-mode", f"{T}:EncoderLayer.forward", "F.dropout(training=True) on the residual", ("dropout",),
      ("x = x + self.dropout(self.self_attention(normed, normed, normed))",
       "x = x + F.dropout(self.self_attention(normed, normed, normed), self.dropout.p, training=True)")),
    M("decoder-layer-norms-exchanged", f"{T}:DecoderLayer.forward", "the self- and cross-attention norms swapped", ("norms",),
      source='''
      def forward(self, x, annotations):
          normed = self.cross_attention_norm(x)
          x = x + self.dropout(self.self_attention(normed, normed, normed))
          normed = self.self_attention_norm(x)
          x = x + self.dropout(self.cross_attention(normed, annotations, annotations))
          return x + self.feed_forward(self.feed_forward_norm(x))
      '''),
    M("encoder-input-dropout-in-eval-mode", f"{T}:TransformerEncoder.forward", "F.dropout(training=True) on the input", ("dropout",),
      ("x = self.dropout(self.positions(self.embedding(source)))",
       "x = F.dropout(self.positions(self.embedding(source)), self.dropout.p, training=True)")),
    M("A-rebuilt-from-its-initialisation", f"{S}:MambaBlock.ssm", "A = −(1 … N), ignoring the trained A_log", ("A",),
      ("A = -torch.exp(self.A_log)",
       "A = -torch.arange(1, self.state_size + 1, dtype=x.dtype).repeat(self.expanded_size, 1)")),
    M("D-taken-as-one", f"{S}:MambaBlock.selective_scan", "y + u instead of y + D u (D starts at 1)", ("missing-step",),
      ("return y + u * D", "return y + u")),
    M("scan-called-directly", f"{S}:MambaBlock.selective_scan", "sscan whatever self.scan says", ("configured-scan",),
      ("SCANS[self.scan](", "sscan(")),
    M("pscan-overflows-past-700-steps", f"{S}:pscan", "h = exp(a*) cumsum(b exp(−a*)): exp(−a*) overflows", ("overflow",), source='''
      def pscan(log_a, b):
          complex_dtype = torch.complex128 if b.dtype == torch.float64 else torch.complex64
          a_star = torch.cumsum(log_a.to(complex_dtype), dim=1)
          h = torch.exp(a_star) * torch.cumsum(b.to(complex_dtype) * torch.exp(-a_star), dim=1)
          return h.real.to(b.dtype)
      '''),
    M("rms-norm-by-hand-without-weight", f"{S}:ResidualBlock.forward", "x / rms(x), without the norm's weight", ("norms",),
      ("return x + self.mixer(self.norm(x))",
       "return x + self.mixer(x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5))")),
    M("residual-missing", f"{S}:ResidualBlock.forward", "mixer(norm(x)) without + x", ("missing-step",),
      ("return x + self.mixer(self.norm(x))", "return self.mixer(self.norm(x))")),
    M("norm-after-the-residual", f"{S}:ResidualBlock.forward", "norm(x + mixer(x)) instead of x + mixer(norm(x))", ("norms",),
      ("return x + self.mixer(self.norm(x))", "return self.norm(x + self.mixer(x))")),
    # --- the kinds of mistake a second independent corpus found the graders missing (issue 19)
    M("mask-built-square-from-one-length", f"{T}:causal_mask", "torch.ones(T, T): right only when T = S", ("shape",),
      ("torch.ones(query_length, key_length", "torch.ones(query_length, query_length")),
    M("softmax-in-float32", MHA, "scores cast to float32 before the softmax: float64 inputs break", ("dtype",),
      ("weights = scores.softmax(dim=-1)", "weights = scores.float().softmax(dim=-1)")),
    M("readout-squeezes-every-single-dimension", f"{S}:MambaBlock.selective_scan",
      "squeeze() also drops a batch or a length of one", ("squeeze",),
      ('y = einsum(h, C, "b l e n, b l n -> b l e")', 'y = (h @ rearrange(C, "b l n -> b l n 1")).squeeze()')),
    M("attention-weights-detached", MHA, "the softmax detached before it mixes the values: no gradient to q and k",
      ("gradient",), ("weights = scores.softmax(dim=-1)", "weights = scores.softmax(dim=-1).detach()")),
    M("attention-scores-under-no-grad", MHA, "the scores computed under torch.no_grad()", ("gradient",), source='''
      def forward(self, query, key, value):
          q, k, v = self.split_heads(self.W_q(query)), self.split_heads(self.W_k(key)), self.split_heads(self.W_v(value))
          with torch.no_grad():
              scores = einsum(q, k, "b h t d, b h s d -> b h t s") / math.sqrt(self.head_size)
              if self.causal:
                  scores = scores.masked_fill(~causal_mask(q.shape[2], k.shape[2], device=q.device), float("-inf"))
          weights = scores.softmax(dim=-1)
          self.attention_weights = weights.detach()
          return self.W_o(self.merge_heads(einsum(self.dropout(weights), v, "b h t s, b h s d -> b h t d")))
      '''),
    M("dropout-before-the-softmax", MHA, "dropout on the masked scores: -inf × 0 is nan in training mode",
      ("dropout",), ("weights = scores.softmax(dim=-1)", "weights = self.dropout(scores).softmax(dim=-1)"),
      ("einsum(self.dropout(weights), v,", "einsum(weights, v,")),
    M("values-mixed-by-the-weights-before-dropout", MHA, "dropout never reaches the weights that mix the values",
      ("dropout",), ("einsum(self.dropout(weights), v,", "einsum(weights, v,")),
    M("mask-cached-by-query-length", f"{T}:causal_mask", "a cache keyed on the query length only", ("state",),
      source='''
      def causal_mask(query_length, key_length, device=None, _cache={}):
          if query_length not in _cache:
              _cache[query_length] = torch.tril(torch.ones(query_length, key_length, dtype=torch.bool, device=device))
          return _cache[query_length]
      '''),
    M("mask-of-floats", f"{T}:causal_mask", "a float 0/1 mask where a boolean one is promised", ("dtype",),
      ("torch.ones(query_length, key_length, dtype=torch.bool, device=device)",
       "torch.ones(query_length, key_length, device=device)")),
    M("positions-cached-by-max-length", f"{T}:sinusoidal_positional_encoding", "a cache keyed on max_length only",
      ("state",), source='''
      def sinusoidal_positional_encoding(max_length, hidden_size, _cache={}):
          if max_length not in _cache:
              position = torch.arange(max_length, dtype=torch.float32)[:, None]
              angle = position / 10000 ** (torch.arange(0, hidden_size, 2, dtype=torch.float32) / hidden_size)
              table = torch.zeros(max_length, hidden_size)
              table[:, 0::2] = torch.sin(angle)
              table[:, 1::2] = torch.cos(angle[:, : hidden_size // 2])
              _cache[max_length] = table
          return _cache[max_length]
      '''),
    M("positions-in-float64", f"{T}:sinusoidal_positional_encoding", "a float64 table where float32 is promised",
      ("dtype",), ("table = torch.zeros(max_length, hidden_size)",
                   "table = torch.zeros(max_length, hidden_size, dtype=torch.float64)")),
    M("split-heads-detached", f"{T}:MultiHeadAttention.split_heads", "the heads cut from autograd", ("gradient",),
      ('rearrange(x, "b l (h d) -> b h l d"', 'rearrange(x.detach(), "b l (h d) -> b h l d"')),
    M("split-heads-reshaped-length-first", f"{T}:MultiHeadAttention.split_heads",
      "a reshape to (L, B, h, d): right for a batch of one, rows mixed otherwise", ("batch",), source='''
      def split_heads(self, x):
          batch, length, _ = x.shape
          return x.reshape(length, batch, self.num_heads, self.head_size).permute(1, 2, 0, 3)
      '''),
    M("encoder-layer-skips-its-norm-in-training", f"{T}:EncoderLayer.forward", "no attention_norm in training mode",
      ("training",), ("normed = self.attention_norm(x)",
                      "normed = x if self.training else self.attention_norm(x)")),
    M("encoder-embeddings-detached", f"{T}:TransformerEncoder.forward", "the embeddings cut from autograd",
      ("gradient",), ("self.positions(self.embedding(source))", "self.positions(self.embedding(source).detach())")),
    M("decoder-layer-annotations-detached", f"{T}:DecoderLayer.forward", "no gradient reaches the encoder",
      ("gradient",), ("self.cross_attention(normed, annotations, annotations)",
                      "self.cross_attention(normed, annotations.detach(), annotations.detach())")),
    M("decoder-layers-cached-by-length", f"{T}:TransformerDecoder.forward",
      "the position table read once, for the first length it saw", ("state",), source='''
      def forward(self, target_in, annotations, _table={}):
          if "rows" not in _table:
              _table["rows"] = self.positions.table[: target_in.shape[1]]
          x = self.dropout(self.embedding(target_in) + _table["rows"][: target_in.shape[1]])
          for layer in self.layers:
              x = layer(x, annotations)
          return self.output(self.norm(x))
      '''),
    M("bilinear-decay-detached", f"{S}:discretize_bilinear", "ΔA cut from autograd", ("gradient",),
      ('delta_A = einsum(delta, A, "b l e, e n -> b l e n")',
       'delta_A = einsum(delta, A, "b l e, e n -> b l e n").detach()')),
    M("bilinear-in-float32", f"{S}:discretize_bilinear", "Ā and B̄ cast to float32 whatever the input", ("dtype",),
      ("return A_bar, B_bar", "return A_bar.float(), B_bar.float()")),
    M("bilinear-returns-three", f"{S}:discretize_bilinear", "a third element: `A, B = ...` cannot unpack it",
      ("type",), ("return A_bar, B_bar", "return A_bar, B_bar, denominator")),
    M("attention-returns-its-weights-too", MHA, "(output, weights) where one tensor is promised", ("type",),
      ("return self.W_o(self.merge_heads(context))", "return self.W_o(self.merge_heads(context)), weights")),
    M("pscan-returns-float32", f"{S}:pscan", "float32 out for float64 in", ("dtype",),
      (".real.to(b.dtype)", ".real.float()")),
    M("pscan-decay-detached", f"{S}:pscan", "the cumulative decay cut from autograd", ("gradient",),
      ("a_star = torch.cumsum(log_a, dim=1)", "a_star = torch.cumsum(log_a.detach(), dim=1)")),
    M("pscan-loop-free-nan", f"{S}:pscan", "no loop, and nothing right: nan everywhere", ("wrong",), source='''
      def pscan(log_a, b):
          return torch.full_like(b, float("nan"))
      '''),
    M("pscan-loop-free-wrong-shape", f"{S}:pscan", "no loop, and the sum over time instead of the scan",
      ("shape",), source='''
      def pscan(log_a, b):
          return b.sum(dim=1)
      '''),
    M("identity-block", f"{S}:MambaBlock.forward", "returns its input: causal, and nothing else", ("missing-step",),
      source='''
      def forward(self, x):
          return x
      '''),
    M("block-gate-detached", f"{S}:MambaBlock.forward", "the gate cut from autograd", ("gradient",),
      ("y * F.silu(z)", "y * F.silu(z.detach())")),
    M("block-dropout-in-training", f"{S}:MambaBlock.forward", "a dropout of its own, on in training mode",
      ("training",), ("y = self.ssm(x)", "y = F.dropout(self.ssm(x), 0.1, self.training)")),
    M("A-detached", f"{S}:MambaBlock.ssm", "A cut from autograd: A_log never learns", ("gradient",),
      ("A = -torch.exp(self.A_log)", "A = -torch.exp(self.A_log).detach()")),
    M("selective-scan-delta-detached", f"{S}:MambaBlock.selective_scan", "Δ cut from autograd before discretising",
      ("gradient",), ("self.discretize(delta, A, B)", "self.discretize(delta.detach(), A, B)")),
    M("discretisation-cached-by-shape", f"{S}:MambaBlock.selective_scan", "Ā and B̄ kept for the first input of a shape",
      ("state",), source='''
      def selective_scan(self, u, delta, A, B, C, D, _cache={}):
          key = tuple(delta.shape)
          if key not in _cache:
              _cache[key] = self.discretize(delta, A, B)
          A_bar, B_bar = _cache[key]
          h = SCANS[self.scan](log_of_decay(delta, A, A_bar, self.discretization), B_bar * u.unsqueeze(-1))
          return einsum(h, C, "b l e n, b l n -> b l e") + u * D
      '''),
    M("residual-mixer-detached", f"{S}:ResidualBlock.forward", "the mixer's output cut from autograd", ("gradient",),
      ("return x + self.mixer(self.norm(x))", "return x + self.mixer(self.norm(x)).detach()")),
    # --- what an outside corpus found next (dropout's place, state kept on the module, other ranks)
    M("encoder-layer-drops-the-mlp-twice", f"{T}:EncoderLayer.forward", "self.dropout around the MLP, which drops already",
      ("dropout",), ("return x + self.feed_forward(self.feed_forward_norm(x))",
                     "return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))")),
    M("encoder-layer-drops-the-residual", f"{T}:EncoderLayer.forward", "dropout on x + attention: the skip path dropped",
      ("dropout",), ("x = x + self.dropout(self.self_attention(normed, normed, normed))",
                     "x = self.dropout(x + self.self_attention(normed, normed, normed))")),
    M("encoder-without-input-dropout", f"{T}:TransformerEncoder.forward", "no dropout on embeddings + positions",
      ("dropout",), ("x = self.dropout(self.positions(self.embedding(source)))",
                     "x = self.positions(self.embedding(source))")),
    M("decoder-layer-without-dropout", f"{T}:DecoderLayer.forward", "neither attention's output dropped", ("dropout",),
      ("x = x + self.dropout(self.self_attention(normed, normed, normed))",
       "x = x + self.self_attention(normed, normed, normed)"),
      ("x = x + self.dropout(self.cross_attention(normed, annotations, annotations))",
       "x = x + self.cross_attention(normed, annotations, annotations)")),
    M("decoder-drops-the-logits", f"{T}:TransformerDecoder.forward", "dropout moved from the input to the logits",
      ("dropout",), ("x = self.dropout(self.positions(self.embedding(target_in)))",
                     "x = self.positions(self.embedding(target_in))"),
      ("return self.output(self.norm(x))", "return self.dropout(self.output(self.norm(x)))")),
    M("attention-weights-kept-after-dropout", MHA, "self.attention_weights holds the dropped weights in training",
      ("dropout",), ("weights = scores.softmax(dim=-1)", "weights = self.dropout(scores.softmax(dim=-1))"),
      ("einsum(self.dropout(weights), v,", "einsum(weights, v,")),
    M("merge-heads-keeps-the-first-length", f"{T}:MultiHeadAttention.merge_heads",
      "the length of the first call kept on the module", ("state",), source='''
      def merge_heads(self, x):
          self._length = getattr(self, "_length", x.shape[2])
          return x.transpose(1, 2).reshape(x.shape[0], self._length, -1)
      '''),
    M("attention-keeps-its-first-mask", f"{T}:MultiHeadAttention.forward", "the causal mask built once, kept on the module",
      ("state",), ("mask = causal_mask(query.shape[1], key.shape[1], device=query.device)  # (T, S)",
                   "mask = self.__dict__.setdefault('_mask', causal_mask(query.shape[1], key.shape[1], "
                   "device=query.device))")),
    M("block-keeps-the-first-length", f"{S}:MambaBlock.forward", "the length of the first call kept for the truncation",
      ("state",), ("length = x.shape[1]", "length = self.__dict__.setdefault('_length', x.shape[1])")),
    M("ssm-keeps-its-first-A", f"{S}:MambaBlock.ssm", "A computed once and kept: A_log's later values ignored",
      ("state",), ("A = -torch.exp(self.A_log)", "A = self.__dict__.setdefault('_A', -torch.exp(self.A_log))")),
    M("pscan-scans-axis-minus-three", f"{S}:pscan", "time taken as axis −3: right for (B, L, E, N) only",
      ("shape",), ("a_star = torch.cumsum(log_a, dim=1)", "a_star = torch.cumsum(log_a, dim=-3)"),
      ("torch.logcumsumexp(log_b - a_star, dim=1)", "torch.logcumsumexp(log_b - a_star, dim=-3)")),
    M("mask-ignores-its-device", f"{T}:causal_mask", "made on the CPU whatever `device` says", ("device",),
      ("dtype=torch.bool, device=device)", "dtype=torch.bool)")),
    M("decoder-positions-detached", f"{T}:TransformerDecoder.forward", "the table added detached: learned positions "
      "never train", ("gradient",), ("x = self.dropout(self.positions(self.embedding(target_in)))",
                                     "x = self.dropout(self.embedding(target_in) + "
                                     "self.positions.table[: target_in.shape[1]].detach())")),
    M("block-convolves-the-batch-as-one-sequence", f"{S}:MambaBlock.forward", "the rows joined end to end for one "
      "convolution: each row's start sees the end of the row before", ("batch",), source='''
      def forward(self, x):
          rows, length = x.shape[0], x.shape[1]
          u, z = self.in_proj(x).chunk(2, dim=-1)
          u = self.conv1d(rearrange(u, "b l e -> 1 e (b l)"))[..., :rows * length]
          u = F.silu(rearrange(u, "1 e (b l) -> b l e", b=rows))
          return self.out_proj(self.ssm(u) * F.silu(z))
      '''),
    M("bilinear-returns-a-list", f"{S}:discretize_bilinear", "[A_bar, B_bar] where a tuple is promised", ("type",),
      ("return A_bar, B_bar", "return [A_bar, B_bar]")),
]

ALTERNATIVES = [
    M("mask-by-comparing-positions", f"{T}:causal_mask", "arange comparisons instead of tril", source='''
      def causal_mask(query_length, key_length, device=None):
          return torch.arange(key_length, device=device)[None, :] <= torch.arange(query_length, device=device)[:, None]
      '''),
    M("split-with-view-and-transpose", f"{T}:MultiHeadAttention.split_heads", "no einops", source='''
      def split_heads(self, x):
          batch, length, _ = x.shape
          return x.view(batch, length, self.num_heads, self.head_size).transpose(1, 2)
      '''),
    M("merge-with-transpose-and-reshape", f"{T}:MultiHeadAttention.merge_heads", "no einops", source='''
      def merge_heads(self, x):
          batch, heads, length, size = x.shape
          return x.transpose(1, 2).reshape(batch, length, heads * size)
      '''),
    M("attention-with-matmul-where-and-minus-1e9", MHA, "@, a pre-scaled q, torch.where with -1e9", source='''
      def forward(self, query, key, value):
          q = self.split_heads(self.W_q(query)) * self.head_size ** -0.5
          k, v = self.split_heads(self.W_k(key)), self.split_heads(self.W_v(value))
          scores = q @ k.transpose(-2, -1)
          if self.causal:
              allowed = causal_mask(query.shape[1], key.shape[1], device=query.device)
              scores = torch.where(allowed, scores, torch.tensor(-1e9, dtype=scores.dtype))
          weights = F.softmax(scores, dim=-1)
          self.attention_weights = weights.detach()
          return self.W_o(self.merge_heads(self.dropout(weights) @ v))
      '''),
    M("attention-with-torch-einsum-and-masked-fill", MHA, "torch.einsum, mask == 0, -1e9", source='''
      def forward(self, query, key, value):
          q, k, v = (self.split_heads(w(x)) for w, x in ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
          scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / self.head_size ** 0.5
          if self.causal:
              scores = scores.masked_fill(causal_mask(q.shape[2], k.shape[2]).to(scores.device) == 0, -1e9)
          self.attention_weights = scores.softmax(-1).detach()
          out = torch.einsum("bhqk,bhkd->bhqd", self.dropout(scores.softmax(-1)), v)
          return self.W_o(self.merge_heads(out))
      '''),
    M("positions-with-exp-log-div-term", f"{T}:sinusoidal_positional_encoding", "exp(-2i log(10000)/H)", source='''
      def sinusoidal_positional_encoding(max_length, hidden_size):
          position = torch.arange(max_length).unsqueeze(1).float()
          div_term = torch.exp(torch.arange(0, hidden_size, 2).float() * (-math.log(10000.0) / hidden_size))
          table = torch.empty(max_length, hidden_size)
          table[:, 0::2] = torch.sin(position * div_term)
          table[:, 1::2] = torch.cos(position * div_term)
          return table
      '''),
    M("decoder-with-functools-reduce", f"{T}:TransformerDecoder.forward", "a reduce over the layers", source='''
      def forward(self, target_in, annotations):
          import functools
          x = self.dropout(self.embedding(target_in) + self.positions.table[: target_in.shape[1]])
          x = functools.reduce(lambda h, layer: layer(h, annotations), self.layers, x)
          return self.output(self.norm(x))
      '''),
    M("encoder-layer-step-by-step", f"{T}:EncoderLayer.forward", "named steps, torch.add, keyword arguments",
      source='''
      def forward(self, x):
          h = self.attention_norm(x)
          attended = self.dropout(self.self_attention(query=h, key=h, value=h))
          y = torch.add(x, attended)
          return torch.add(y, self.feed_forward(self.feed_forward_norm(y)))
      '''),
    M("encoder-one-step-per-line", f"{T}:TransformerEncoder.forward", "one step a line, F.dropout", source='''
      def forward(self, source):
          x = self.embedding(source)
          x = self.positions(x)
          x = F.dropout(x, self.dropout.p, self.training)
          for layer in self.layers:
              x = layer(x)
          return self.norm(x)
      '''),
    M("decoder-layer-named-steps", f"{T}:DecoderLayer.forward", "named intermediate results, keyword arguments",
      source='''
      def forward(self, x, annotations):
          q = self.self_attention_norm(x)
          after_self = x + self.dropout(self.self_attention(query=q, key=q, value=q))
          q = self.cross_attention_norm(after_self)
          after_cross = after_self + self.dropout(self.cross_attention(q, key=annotations, value=annotations))
          return after_cross + self.feed_forward(self.feed_forward_norm(after_cross))
      '''),
    M("decoder-with-keyword-layers-and-functional-output", f"{T}:TransformerDecoder.forward",
      "layers called by keyword, F.linear for the projection", source='''
      def forward(self, target_in, annotations):
          x = self.dropout(self.positions(self.embedding(target_in)))
          for layer in self.layers:
              x = layer(x, annotations=annotations)
          return F.linear(self.norm(x), self.output.weight, self.output.bias)
      '''),
    M("bilinear-by-broadcasting", f"{S}:discretize_bilinear", "unsqueeze instead of einsum", source='''
      def discretize_bilinear(delta, A, B, alpha=0.5):
          dA = delta.unsqueeze(-1) * A
          inverse = 1.0 / (1.0 - (1.0 - alpha) * dA)
          return (1.0 + alpha * dA) * inverse, delta.unsqueeze(-1) * B.unsqueeze(2) * inverse
      '''),
    M("doubling-scan", f"{S}:pscan", "Hillis–Steele in linear space: log L steps, no log of b", source='''
      def pscan(log_a, b):
          a = torch.exp(log_a).real if log_a.is_complex() else torch.exp(log_a)
          h, offset = b, 1
          while offset < b.shape[1]:
              h = h + a * torch.cat([torch.zeros_like(h[:, :offset]), h[:, :-offset]], dim=1)
              a = a * torch.cat([torch.ones_like(a[:, :offset]), a[:, :-offset]], dim=1)
              offset *= 2
          return h
      '''),
    M("heinsen-with-complex-from-polar", f"{S}:pscan", "the sign as a phase, torch.polar", source='''
      def pscan(log_a, b):
          log_b = torch.complex(b.abs().log(), torch.where(b < 0, torch.pi, 0.0).to(b.dtype))
          a_star = log_a.cumsum(1)
          return (a_star + (log_b - a_star).logcumsumexp(1)).exp().real.to(b.dtype)
      '''),
    M("heinsen-always-in-complex64", f"{S}:pscan", "complex64 whatever the input dtype, view_as_real", source='''
      def pscan(log_a, b):
          log_b = torch.log(b.to(torch.complex64))
          a_star = torch.cumsum(log_a, dim=1)
          return torch.view_as_real(torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1)))[..., 0]
      '''),
    M("block-with-pad-and-functional-conv", f"{S}:MambaBlock.forward", "F.pad + F.conv1d, slicing", source='''
      def forward(self, x):
          E = self.expanded_size
          xz = self.in_proj(x)
          u, z = xz[..., :E], xz[..., E:]
          u = F.pad(u.transpose(1, 2), (self.conv_kernel - 1, 0))
          u = F.conv1d(u, self.conv1d.weight, self.conv1d.bias, groups=E).transpose(1, 2)
          return self.out_proj(self.ssm(F.silu(u)) * F.silu(z))
      '''),
    M("ssm-by-slicing", f"{S}:MambaBlock.ssm", "slices instead of split", source='''
      def ssm(self, x):
          R, N = self.dt_rank, self.state_size
          p = self.x_proj(x)
          delta = F.softplus(self.dt_proj(p[..., :R]))
          return self.selective_scan(x, delta, -self.A_log.exp(), p[..., R:R + N], p[..., R + N:], self.D)
      '''),
    M("selective-scan-by-broadcasting", f"{S}:MambaBlock.selective_scan", "unsqueeze and sum", source='''
      def selective_scan(self, u, delta, A, B, C, D):
          A_bar, B_bar = self.discretize(delta, A, B)
          h = SCANS[self.scan](log_of_decay(delta, A, A_bar, self.discretization), B_bar * u.unsqueeze(-1))
          return (h * C.unsqueeze(2)).sum(-1) + D * u
      '''),
    M("residual-added-last", f"{S}:ResidualBlock.forward", "mixer first, then + x", source='''
      def forward(self, x):
          return self.mixer(self.norm(x)) + x
      '''),
    M("residual-with-functional-rms-norm", f"{S}:ResidualBlock.forward", "F.rms_norm with the module's weight",
      source='''
      def forward(self, x):
          return x + self.mixer(F.rms_norm(x, (x.shape[-1],), self.norm.weight, self.norm.eps))
      '''),
    M("attention-with-an-additive-minus-infinity-mask", MHA, "a float mask of 0 and −inf added to the scores",
      source='''
      def forward(self, query, key, value):
          q, k, v = self.split_heads(self.W_q(query)), self.split_heads(self.W_k(key)), self.split_heads(self.W_v(value))
          scores = einsum(q, k, "b h q d, b h k d -> b h q k") * self.head_size ** -0.5
          if self.causal:
              allowed = causal_mask(q.shape[2], k.shape[2], device=q.device)
              scores = scores + torch.zeros(allowed.shape, dtype=scores.dtype).masked_fill(~allowed, float("-inf"))
          weights = torch.softmax(scores, dim=-1)
          self.attention_weights = weights.detach()
          return self.W_o(self.merge_heads(einsum(self.dropout(weights), v, "b h q k, b h k d -> b h q d")))
      '''),
    M("heinsen-in-complex128-whatever-the-dtype", f"{S}:pscan", "float64 internals for float32 inputs too", source='''
      def pscan(log_a, b):
          a_star = torch.cumsum(log_a.to(torch.complex128), dim=1)
          log_h = a_star + torch.logcumsumexp(torch.log(b.to(torch.complex128)) - a_star, dim=1)
          return torch.exp(log_h).real.to(b.dtype)
      '''),
    M("chunked-two-level-heinsen", f"{S}:pscan", "chunks of 16 scanned in parallel, then the carries", source='''
      def pscan(log_a, b):
          complex_dtype = torch.complex128 if b.dtype == torch.float64 else torch.complex64
          length, chunk = b.shape[1], 16
          pad = (-length) % chunk
          padding = (b.shape[0], pad, *b.shape[2:])
          log_a = torch.cat([log_a.to(complex_dtype), log_a.new_zeros(padding, dtype=complex_dtype)], dim=1)
          b = torch.cat([b, b.new_zeros(padding)], dim=1)
          shape = (b.shape[0], b.shape[1] // chunk, chunk, *b.shape[2:])
          log_a, log_b = log_a.reshape(shape), torch.log(b.to(complex_dtype)).reshape(shape)
          within = torch.cumsum(log_a, dim=2)  # decay from each chunk's start
          local = within + torch.logcumsumexp(log_b - within, dim=2)  # h inside each chunk, starting from 0
          ends = torch.cumsum(within[:, :, -1], dim=1)  # decay from the start to each chunk's end
          log_carry = ends + torch.logcumsumexp(local[:, :, -1] - ends, dim=1)  # h at each chunk's end
          start = torch.cat([torch.full_like(log_carry[:, :1], float("-inf")), log_carry[:, :-1]], dim=1)
          h = torch.exp(local) + torch.exp(start.unsqueeze(2) + within)
          return h.reshape(b.shape)[:, :length].real.to(b.dtype)
      '''),
    M("attention-by-scaled-dot-product-attention", MHA, "PyTorch's own attention with an explicit mask", source='''
      def forward(self, query, key, value):
          q, k, v = self.split_heads(self.W_q(query)), self.split_heads(self.W_k(key)), self.split_heads(self.W_v(value))
          mask = causal_mask(q.shape[2], k.shape[2], device=q.device) if self.causal else None
          scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)
          if mask is not None:
              scores = scores.masked_fill(~mask, float("-inf"))
          self.attention_weights = scores.softmax(dim=-1).detach()
          mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.dropout.p if self.training else 0.0)
          return self.W_o(self.merge_heads(mixed))
      '''),
    M("decoder-makes-its-own-sinusoidal-table", f"{T}:TransformerDecoder.forward",
      "calls sinusoidal_positional_encoding itself when the positions are sinusoidal", source='''
      def forward(self, target_in, annotations):
          length = target_in.shape[1]
          x = self.embedding(target_in)
          if self.positions.kind == "sinusoidal":
              x = x + sinusoidal_positional_encoding(length, x.shape[-1]).to(x.dtype)
          else:
              x = x + self.positions.table[:length]
          x = self.dropout(x)
          for layer in self.layers:
              x = layer(x, annotations)
          return self.output(self.norm(x))
      '''),
    M("block-with-the-ssm-inlined", f"{S}:MambaBlock.forward", "computes delta, B, C itself and calls selective_scan",
      source='''
      def forward(self, x):
          length = x.shape[1]
          u, z = self.in_proj(x).chunk(2, dim=-1)
          u = F.silu(self.conv1d(u.transpose(1, 2))[..., :length].transpose(1, 2))
          delta, B, C = self.x_proj(u).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
          y = self.selective_scan(u, F.softplus(self.dt_proj(delta)), -torch.exp(self.A_log), B, C, self.D)
          return self.out_proj(y * F.silu(z))
      '''),
    M("positions-with-a-base-parameter", f"{T}:sinusoidal_positional_encoding", "an extra parameter with its "
      "default, which the given code never passes (the body works without it)", source='''
      def sinusoidal_positional_encoding(max_length, hidden_size, base=10000.0):
          angles = torch.arange(max_length, dtype=torch.float32)[:, None] / 10000.0 ** (
              torch.arange(0, hidden_size, 2, dtype=torch.float32) / hidden_size)
          table = torch.zeros(max_length, hidden_size)
          table[:, 0::2], table[:, 1::2] = angles.sin(), angles[:, : hidden_size // 2].cos()
          return table
      '''),
    M("encoder-layer-with-an-extra-keyword", f"{T}:EncoderLayer.forward", "an extra keyword with a default, which "
      "the given code never passes", source='''
      def forward(self, x, keep_weights=True):
          h = self.attention_norm(x)
          y = x + self.dropout(self.self_attention(query=h, key=h, value=h))
          return y + self.feed_forward(self.feed_forward_norm(y))
      '''),
    M("mask-from-numpy", f"{T}:causal_mask", "numpy's tril, moved to the device", source='''
      def causal_mask(query_length, key_length, device=None):
          import numpy
          return torch.from_numpy(numpy.tril(numpy.ones((query_length, key_length), dtype=bool))).to(device)
      '''),
]


HIDDEN_ONLY_MUTANTS = [
    M("truncation-hard-codes-kernel-4", f"{S}:MambaBlock.forward", "[..., :-3] is causal only for kernel 4", ("kernel",),
      ("self.conv1d(x)[..., :length]", "self.conv1d(x)[..., :-3]")),
    M("dt-rank-hard-coded-to-one", f"{S}:MambaBlock.ssm", "ceil(H / 16) is 1 only up to H = 16", ("dt-rank",),
      ("split([self.dt_rank,", "split([1,")),
    M("expansion-hard-coded-to-two", f"{S}:MambaBlock.forward", "x and z split at 2H: right only for expand = 2",
      ("expand",), ("self.in_proj(x).chunk(2, dim=-1)", "self.in_proj(x).split(2 * self.hidden_size, dim=-1)")),
    M("state-size-hard-coded-to-four", f"{S}:MambaBlock.ssm", "B and C split at 4: right only for state size 4",
      ("state-size",), ("split([self.dt_rank, self.state_size, self.state_size]", "split([self.dt_rank, 4, 4]")),
]
