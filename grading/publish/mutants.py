"""Proof that the graded tests can fail, and that they fail only wrong code.

A *mutant* is the reference solution of one student function with one plausible mistake (a text
replacement on its source, or a whole new body); every mutant must lose points. An *alternative* is a
different but correct way to write one graded function (other einsum spellings, view/transpose for
rearrange, a -1e9 mask, a doubling scan, ...); every alternative must keep all 10 points, and all the
points of the hidden tests (tests/hidden, run by the regrade). A *hidden-only mutant* is a mistake the
public tests cannot see because it fits their inputs (a square mask, a kernel of 4 hard-coded): it must
keep all 10 public points and lose hidden ones, which proves the hidden tests add something.

Each variant is compiled in its module's namespace and put in place of the reference everywhere the
reference function is bound (the class or module, tables such as SCANS, modules that imported it by
name), exactly as if a student had written it; then the graded tests run in this process.

    python -m grading mutants        prints which graded tests catch each mutant
"""

import contextlib
import importlib
import inspect
import io
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def M(name, target, why, *replace, source=""):
    return Variant(name, target, why, tuple(replace), source)


T, S = "models.transformer", "models.mamba"
MHA = f"{T}:MultiHeadAttention.forward"

MUTANTS = [
    # --- Q1.1 attention
    M("no-scaling", MHA, "scores not divided by √d", (" / math.sqrt(self.head_size)", "")),
    M("scaled-by-hidden-size", MHA, "divided by √H instead of √d (the head size)",
      ("math.sqrt(self.head_size)", "math.sqrt(self.hidden_size)")),
    M("mask-on-the-wrong-side", f"{T}:causal_mask", "upper triangle: attends to the future, not the past",
      ("torch.tril(", "torch.triu(")),
    M("mask-hides-the-present", f"{T}:causal_mask", "off by one: a position may not see itself",
      ("device=device))", "device=device), diagonal=-1)")),
    M("mask-shows-the-next-token", f"{T}:causal_mask", "off by one: a position sees one future token",
      ("device=device))", "device=device), diagonal=1)")),
    M("mask-applied-inverted", MHA, "masked_fill on the allowed positions instead of the future ones",
      ("masked_fill(~mask,", "masked_fill(mask,")),
    M("softmax-over-queries", MHA, "softmax over the wrong axis", ("softmax(dim=-1)", "softmax(dim=-2)")),
    M("weights-kept-before-softmax", MHA, "stores the scores, not the softmax weights",
      ("self.attention_weights = weights.detach()", "self.attention_weights = scores.detach()")),
    M("no-output-projection", MHA, "forgets W_o",
      ("return self.W_o(self.merge_heads(context))", "return self.merge_heads(context)")),
    M("heads-merged-in-the-wrong-order", f"{T}:MultiHeadAttention.merge_heads", "(d h) instead of (h d)",
      ('"b h l d -> b l (h d)"', '"b h l d -> b l (d h)"')),
    M("heads-split-in-the-wrong-order", f"{T}:MultiHeadAttention.split_heads", "(d h) instead of (h d)",
      ('"b l (h d) -> b h l d"', '"b l (d h) -> b h l d"')),
    # --- Q1.2 encoder
    M("sin-and-cos-swapped", f"{T}:sinusoidal_positional_encoding", "cos on even columns, sin on odd",
      ("table[:, 0::2] = torch.sin(angle)", "table[:, 0::2] = torch.cos(angle)"),
      ("table[:, 1::2] = torch.cos(angle[", "table[:, 1::2] = torch.sin(angle[")),
    M("exponent-i-instead-of-2i", f"{T}:sinusoidal_positional_encoding", "10000^(i/H) instead of 10000^(2i/H)",
      ("torch.arange(0, hidden_size, 2, dtype=torch.float32)", "torch.arange(0, hidden_size // 2, dtype=torch.float32)")),
    M("encoder-positions-not-added", f"{T}:TransformerEncoder.forward", "embeddings only",
      ("self.positions(self.embedding(source))", "self.embedding(source)")),
    M("encoder-without-final-norm", f"{T}:TransformerEncoder.forward", "no final LayerNorm",
      ("return self.norm(x)", "return x")),
    M("encoder-post-norm", f"{T}:EncoderLayer.forward", "norm(x + sublayer(x)) instead of x + sublayer(norm(x))",
      source='''
      def forward(self, x):
          x = self.attention_norm(x + self.dropout(self.self_attention(x, x, x)))
          return self.feed_forward_norm(x + self.feed_forward(x))
      '''),
    M("encoder-mlp-without-residual", f"{T}:EncoderLayer.forward", "the MLP replaces x instead of adding to it",
      ("return x + self.feed_forward(", "return self.feed_forward(")),
    # --- Q1.3 decoder
    M("decoder-positions-not-added", f"{T}:TransformerDecoder.forward", "the original starter's bug",
      ("self.positions(self.embedding(target_in))", "self.embedding(target_in)")),
    M("decoder-self-attention-not-causal", f"{T}:DecoderLayer.forward", "uses the non-causal module for self-attention",
      ("self.self_attention(normed, normed, normed)", "self.cross_attention(normed, normed, normed)")),
    M("cross-attention-over-the-decoder", f"{T}:DecoderLayer.forward", "keys and values from the decoder, not the encoder",
      ("self.cross_attention(normed, annotations, annotations)", "self.cross_attention(normed, normed, normed)")),
    M("decoder-without-final-norm", f"{T}:TransformerDecoder.forward", "projects without the final LayerNorm",
      ("return self.output(self.norm(x))", "return self.output(x)")),
    # --- Q2.1 discretisation
    M("alpha-swapped", f"{S}:discretize_bilinear", "α and 1−α exchanged (invisible at α = ½)",
      ("A_bar = (1 + alpha * delta_A)", "A_bar = (1 + (1 - alpha) * delta_A)"),
      ("denominator = 1 - (1 - alpha) * delta_A", "denominator = 1 - alpha * delta_A")),
    M("zero-order-hold-instead", f"{S}:discretize_bilinear", "Ā = exp(ΔA), B̄ = ΔB",
      source='''
      def discretize_bilinear(delta, A, B, alpha=0.5):
          A_bar = torch.exp(einsum(delta, A, "b l e, e n -> b l e n"))
          return A_bar, einsum(delta, B, "b l e, b l n -> b l e n")
      '''),
    M("B-bar-without-denominator", f"{S}:discretize_bilinear", "B̄ = ΔB",
      ('"b l e, b l n -> b l e n") / denominator', '"b l e, b l n -> b l e n")')),
    # --- Q2.2 parallel scan
    M("sign-lost-in-log", f"{S}:pscan", "log|b| without iπ for negative b",
      ("log_b = torch.log(b.to(complex_dtype))", "log_b = torch.log(b.abs()).to(complex_dtype)")),
    M("cumsum-off-by-one", f"{S}:pscan", "an exclusive cumulative sum of log a",
      ("a_star = torch.cumsum(log_a, dim=1)", "a_star = torch.cumsum(log_a, dim=1) - log_a")),
    M("magnitude-instead-of-real-part", f"{S}:pscan", "|h| instead of Re h", (".real.to(b.dtype)", ".abs().to(b.dtype)")),
    M("pscan-calls-the-given-pair-scan", f"{S}:pscan", "hands the work to the given exact scan",
      source='''
      def pscan(log_a, b):
          return pair_scan(log_a, b)
      '''),
    M("pscan-calls-the-given-loop", f"{S}:pscan", "hands the work to the given sscan",
      source='''
      def pscan(log_a, b):
          return sscan(log_a, b)
      '''),
    M("pscan-is-a-loop", f"{S}:pscan", "a Python loop over time, not a parallel scan",
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
    M("non-causal-convolution", f"{S}:MambaBlock.forward", "keeps the last L conv outputs: sees 3 future steps",
      ("self.conv1d(x)[..., :length]", "self.conv1d(x)[..., -length:]")),
    M("no-silu-after-convolution", f"{S}:MambaBlock.forward", "the convolution output goes to the SSM raw",
      ('x = F.silu(rearrange(x, "b e l -> b l e"))', 'x = rearrange(x, "b e l -> b l e")')),
    M("silu-gate-missing", f"{S}:MambaBlock.forward", "y instead of y · SiLU(z)",
      ("return self.out_proj(y * F.silu(z))", "return self.out_proj(y)")),
    M("gate-without-silu", f"{S}:MambaBlock.forward", "y · z instead of y · SiLU(z)",
      ("y * F.silu(z)", "y * z")),
    M("A-positive", f"{S}:MambaBlock.ssm", "A = exp(A_log): the state grows instead of decaying",
      ("A = -torch.exp(self.A_log)", "A = torch.exp(self.A_log)")),
    M("delta-without-softplus", f"{S}:MambaBlock.ssm", "Δ = dt_proj(δ), possibly negative",
      ("delta = F.softplus(self.dt_proj(delta))", "delta = self.dt_proj(delta)")),
    M("B-and-C-swapped", f"{S}:MambaBlock.ssm", "x_proj's output split as δ, C, B",
      ("delta, B, C = self.x_proj(x)", "delta, C, B = self.x_proj(x)")),
    M("D-skip-missing", f"{S}:MambaBlock.selective_scan", "y_t = C_t h_t without D u_t", ("return y + u * D", "return y")),
    M("input-not-in-b", f"{S}:MambaBlock.selective_scan", "b_t = B̄_t instead of B̄_t u_t",
      ('b = B_bar * rearrange(u, "b l e -> b l e 1")', "b = B_bar")),
    M("discretisation-ignored", f"{S}:MambaBlock.selective_scan", "always zero-order hold, whatever the config",
      ("self.discretize(delta, A, B)", "discretize_zoh(delta, A, B)")),
    # --- the kinds of mistake an independent corpus found the graders missing (issue 11)
    M("dropout-on-in-eval-mode", MHA, "F.dropout with training=True: dropout stays on after model.eval()",
      ("self.dropout(weights)", "F.dropout(weights, self.dropout.p, training=True)")),
    M("values-projected-from-the-key", MHA, "W_v applied to key, not value",
      ("self.split_heads(self.W_v(value))", "self.split_heads(self.W_v(key))")),
    M("encoder-layer-norms-exchanged", f"{T}:EncoderLayer.forward", "attention_norm before the MLP and vice versa",
      ("normed = self.attention_norm(x)", "normed = self.feed_forward_norm(x)"),
      ("self.feed_forward(self.feed_forward_norm(x))", "self.feed_forward(self.attention_norm(x))")),
    M("encoder-layer-one-norm-for-both", f"{T}:EncoderLayer.forward", "attention_norm used before the MLP too",
      ("self.feed_forward(self.feed_forward_norm(x))", "self.feed_forward(self.attention_norm(x))")),
    M("encoder-layer-dropout-in-eval-mode", f"{T}:EncoderLayer.forward", "F.dropout(training=True) on the residual",
      ("x = x + self.dropout(self.self_attention(normed, normed, normed))",
       "x = x + F.dropout(self.self_attention(normed, normed, normed), self.dropout.p, training=True)")),
    M("decoder-layer-norms-exchanged", f"{T}:DecoderLayer.forward", "the self- and cross-attention norms swapped",
      source='''
      def forward(self, x, annotations):
          normed = self.cross_attention_norm(x)
          x = x + self.dropout(self.self_attention(normed, normed, normed))
          normed = self.self_attention_norm(x)
          x = x + self.dropout(self.cross_attention(normed, annotations, annotations))
          return x + self.feed_forward(self.feed_forward_norm(x))
      '''),
    M("encoder-input-dropout-in-eval-mode", f"{T}:TransformerEncoder.forward", "F.dropout(training=True) on the input",
      ("x = self.dropout(self.positions(self.embedding(source)))",
       "x = F.dropout(self.positions(self.embedding(source)), self.dropout.p, training=True)")),
    M("A-rebuilt-from-its-initialisation", f"{S}:MambaBlock.ssm", "A = −(1 … N), ignoring the trained A_log",
      ("A = -torch.exp(self.A_log)",
       "A = -torch.arange(1, self.state_size + 1, dtype=x.dtype).repeat(self.expanded_size, 1)")),
    M("D-taken-as-one", f"{S}:MambaBlock.selective_scan", "y + u instead of y + D u (D starts at 1)",
      ("return y + u * D", "return y + u")),
    M("scan-called-directly", f"{S}:MambaBlock.selective_scan", "sscan whatever self.scan says",
      ("SCANS[self.scan](", "sscan(")),
    M("pscan-overflows-past-700-steps", f"{S}:pscan", "h = exp(a*) cumsum(b exp(−a*)): exp(−a*) overflows", source='''
      def pscan(log_a, b):
          complex_dtype = torch.complex128 if b.dtype == torch.float64 else torch.complex64
          a_star = torch.cumsum(log_a.to(complex_dtype), dim=1)
          h = torch.exp(a_star) * torch.cumsum(b.to(complex_dtype) * torch.exp(-a_star), dim=1)
          return h.real.to(b.dtype)
      '''),
    M("rms-norm-by-hand-without-weight", f"{S}:ResidualBlock.forward", "x / rms(x), without the norm's weight",
      ("return x + self.mixer(self.norm(x))",
       "return x + self.mixer(x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-5))")),
    M("residual-missing", f"{S}:ResidualBlock.forward", "mixer(norm(x)) without + x",
      ("return x + self.mixer(self.norm(x))", "return self.mixer(self.norm(x))")),
    M("norm-after-the-residual", f"{S}:ResidualBlock.forward", "norm(x + mixer(x)) instead of x + mixer(norm(x))",
      ("return x + self.mixer(self.norm(x))", "return self.norm(x + self.mixer(x))")),
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
    M("encoder-layer-step-by-step", f"{T}:EncoderLayer.forward", "dropout on both sublayers", source='''
      def forward(self, x):
          h = self.attention_norm(x)
          x = x + self.dropout(self.self_attention(h, h, h))
          return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
      '''),
    M("encoder-one-step-per-line", f"{T}:TransformerEncoder.forward", "no dropout at the input", source='''
      def forward(self, source):
          x = self.embedding(source)
          x = self.positions(x)
          for layer in self.layers:
              x = layer(x)
          return self.norm(x)
      '''),
    M("decoder-layer-named-steps", f"{T}:DecoderLayer.forward", "named intermediate results", source='''
      def forward(self, x, annotations):
          q = self.self_attention_norm(x)
          after_self = x + self.self_attention(q, q, q)
          q = self.cross_attention_norm(after_self)
          after_cross = after_self + self.cross_attention(q, annotations, annotations)
          return after_cross + self.feed_forward(self.feed_forward_norm(after_cross))
      '''),
    M("decoder-with-functools-reduce", f"{T}:TransformerDecoder.forward", "a reduce over the layers", source='''
      def forward(self, target_in, annotations):
          import functools
          x = self.dropout(self.embedding(target_in) + self.positions.table[: target_in.shape[1]])
          x = functools.reduce(lambda h, layer: layer(h, annotations), self.layers, x)
          return self.output(self.norm(x))
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
]


HIDDEN_ONLY_MUTANTS = [
    M("mask-built-square-from-one-length", f"{T}:causal_mask", "torch.ones(T, T): right only when T = S",
      ("torch.ones(query_length, key_length", "torch.ones(query_length, query_length")),
    M("softmax-in-float32", MHA, "scores cast to float32 before the softmax: float64 inputs break",
      ("weights = scores.softmax(dim=-1)", "weights = scores.float().softmax(dim=-1)")),
    M("truncation-hard-codes-kernel-4", f"{S}:MambaBlock.forward", "[..., :-3] is causal only for kernel 4",
      ("self.conv1d(x)[..., :length]", "self.conv1d(x)[..., :-3]")),
    M("dt-rank-hard-coded-to-one", f"{S}:MambaBlock.ssm", "ceil(H / 16) is 1 only up to H = 16",
      ("split([self.dt_rank,", "split([1,")),
    M("readout-squeezes-every-single-dimension", f"{S}:MambaBlock.selective_scan",
      "squeeze() also drops a batch or a length of one",
      ('y = einsum(h, C, "b l e n, b l n -> b l e")', 'y = (h @ rearrange(C, "b l n -> b l n 1")).squeeze()')),
]


def is_project_module(module) -> bool:
    """A module of this repository's own code: not a package installed into a virtual environment that
    happens to live inside it (CI's .venv), whose lazy mappings may not even survive being read."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return path.is_relative_to(REPO) and "site-packages" not in path.parts


@contextlib.contextmanager
def substituted(variant: Variant):
    """The variant in place of the reference wherever the reference function is bound, then restored."""
    module, owner, original = _resolve(variant.target)
    namespace = {}
    exec(compile(variant.function_source(), f"<{variant.name}>", "exec"), module.__dict__, namespace)
    (replacement,) = [value for value in namespace.values() if callable(value)]
    replacement.__qualname__ = original.__qualname__
    replacement.__doc__ = original.__doc__
    bindings = [(owner, original.__name__)] if owner is not module else []
    for name, loaded in list(sys.modules.items()):  # `from models.mamba import pscan` and tables like SCANS
        if is_project_module(loaded):
            for key, value in list(vars(loaded).items()):
                if value is original:
                    bindings.append((loaded, key))
                elif type(value) is dict and any(item is original for item in value.values()):
                    bindings += [(value, k) for k, item in value.items() if item is original]
    try:
        for where, key in bindings:
            if isinstance(where, dict):
                where[key] = replacement
            else:
                setattr(where, key, replacement)
        yield
    finally:
        for where, key in bindings:
            if isinstance(where, dict):
                where[key] = original
            else:
                setattr(where, key, original)


class _VariantLoop:
    """A pytest plugin that collects the graded tests once, then runs them once per job (a variant in
    place, or the reference for None), instead of pytest's single pass: one session for the corpus."""

    def __init__(self, jobs):
        self.jobs, self.results = jobs, []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        for variant, all_tests in self.jobs:
            wanted = {str(path) for paths in QUESTION_FILES.values() for path in paths} \
                if all_tests or variant is None else set(map(str, QUESTION_FILES[variant.target.split(":")[0]]))
            items = [item for item in session.items if str(item.fspath) in wanted]
            with substituted(variant) if variant else contextlib.nullcontext():
                self.results.append(_run_items(items))
        return True


def _run_items(items) -> dict:
    from _pytest.runner import runtestprotocol

    rows = {}
    for index, item in enumerate(items):
        reports = runtestprotocol(item, nextitem=items[index + 1] if index + 1 < len(items) else None, log=False)
        failed = [report for report in reports if report.failed]
        name = getattr(item, "originalname", None) or item.name
        row = rows.setdefault(name, {"name": name, "points": float(item.get_closest_marker("points").args[0]),
                                     "hidden": Path(str(item.fspath)).parent == HIDDEN,
                                     "outcome": "passed", "message": ""})
        if failed and row["outcome"] == "passed":
            row["outcome"], row["message"] = "failed", str(failed[0].longrepr)
    from autograde.harness import TARGETS_RUN

    tests = [{**row, "earned": row["points"] if row["outcome"] == "passed" else 0.0,
              "targets": sorted(TARGETS_RUN.get(row["name"], ()))} for row in rows.values()]
    public = [row for row in tests if not row["hidden"]]
    hidden = [row for row in tests if row["hidden"]]
    return {"tests": tests, "total": sum(row["earned"] for row in public), "max": sum(row["points"] for row in public),
            "hidden_total": sum(row["earned"] for row in hidden), "hidden_max": sum(row["points"] for row in hidden)}


def run_variants(jobs: list) -> list[dict]:
    """Graded results (public and hidden) for each job (variant or None, all_tests), all in one pytest
    session in this process. The reference runs first: it imports the test modules, which must bind the
    reference functions (a module first imported while a variant is in place would keep the variant after
    it is restored)."""
    import torch

    loop = _VariantLoop([(None, True), *jobs])
    files = [str(path) for paths in QUESTION_FILES.values() for path in paths]
    args = [*files, "-p", "no:cacheprovider", "-o", "addopts=", "-W", "ignore", "-q"]
    threads = torch.get_num_threads()
    # The tests' tensors are tiny: a second thread only waits for the first (the corpus runs 20x faster).
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main(args, plugins=[loop])
    finally:
        torch.set_num_threads(threads)
    reference, *results = loop.results
    if len(loop.results) != len(jobs) + 1 or reference["total"] != reference["max"] or (
            reference["hidden_total"] != reference["hidden_max"]):
        raise RuntimeError(f"the reference itself scores {reference['total']:g}/{reference['max']:g} "
                           f"(hidden {reference['hidden_total']:g}/{reference['hidden_max']:g})")
    return results


def corpus_jobs() -> list:
    """(variant, all_tests) for every mutant (its question's tests), hidden-only mutant and alternative
    (every test)."""
    return ([(variant, False) for variant in MUTANTS + HIDDEN_ONLY_MUTANTS]
            + [(variant, True) for variant in ALTERNATIVES])


def run_corpus(verbose: bool = True) -> int:
    """Every mutant must lose public points, every hidden-only mutant keep them and lose hidden ones, every
    alternative keep all of them; prints a table. Exit status."""
    failures = 0
    jobs = corpus_jobs()
    for (variant, _), result in zip(jobs, run_variants(jobs)):
        caught = [("hidden:" if row["hidden"] else "") + row["name"] for row in result["tests"]
                  if row["outcome"] != "passed"]
        lost = result["max"] - result["total"]
        hidden_lost = result["hidden_max"] - result["hidden_total"]
        if variant in ALTERNATIVES:
            verdict = "WRONGLY FAILED" if caught else "kept all"
        elif variant in HIDDEN_ONLY_MUTANTS:
            verdict = "caught" if hidden_lost and not lost else "MISSED" if not hidden_lost else "PUBLIC SEES IT"
        else:
            verdict = "caught" if lost else "MISSED"
        failures += verdict not in ("caught", "kept all")
        if verbose:
            print(f"{verdict:14}  {variant.name:40} -{lost:g} public -{hidden_lost:g} hidden  {', '.join(caught)}")
    return 1 if failures else 0
