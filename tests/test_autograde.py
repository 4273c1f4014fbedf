"""The graded-test framework's own machinery (autograde/): inputs that depend on every bit of the regrade's
secret, dropout masks a test can foresee, stand-ins that answer only what their call may ask and pass exact
gradients, and totals read from the markers."""

import torch
import torch.nn.functional as F

from autograde import oracles, points, standins
from autograde.dropout import FixedDropout, drop, keep_mask
from autograde.harness import Case
from autograde.wire import Call, ModuleSpec


def test_every_bit_of_the_secret_changes_the_inputs_and_the_same_secret_gives_the_same_ones():
    secret = 0x2A5F_0000_1234
    draws = {offset: Case("test_x", run_now=False, secret=secret + offset).randn(8)
             for offset in (0, 7 << 40, 1 << 61, 1)}
    assert torch.equal(draws[0], Case("test_x", run_now=False, secret=secret).randn(8))
    assert all(not torch.equal(draws[0], draws[offset]) for offset in (7 << 40, 1 << 61, 1))
    assert not torch.equal(draws[0], Case("test_y", run_now=False, secret=secret).randn(8))


def test_dropout_masks_depend_on_the_seed_the_shape_and_p_only():
    assert torch.equal(keep_mask((3, 4), 0.5, 7), keep_mask((3, 4), 0.5, 7))
    assert not torch.equal(keep_mask((3, 4), 0.5, 7), keep_mask((3, 4), 0.5, 8))
    kept = keep_mask((200, 200), 0.3, 1).double().mean().item()
    assert abs(kept - 0.7) < 0.02


def test_every_way_to_ask_for_dropout_draws_the_foreseeable_mask_and_eval_mode_none():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    module = torch.nn.Dropout(0.4)
    with FixedDropout(seed=11):
        by_module = module.train()(x)
        by_function = F.dropout(x, 0.4, training=True)
        by_torch = torch.dropout(x, 0.4, True)
        off = module.eval()(x)
        off_by_function = F.dropout(x, 0.4, training=False)
    expected = drop(x, 0.4, 11)
    assert torch.equal(by_module, expected) and torch.equal(by_function, expected) and torch.equal(by_torch, expected)
    assert torch.equal(off, x) and torch.equal(off_by_function, x)


def test_attention_with_dropout_p_drops_the_softmax_weights_with_the_same_masks():
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64) for _ in range(3))
    with FixedDropout(seed=3):
        got = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    weights = (q @ k.transpose(-2, -1) / 3 ** 0.5).softmax(dim=-1)
    torch.testing.assert_close(got, drop(weights, 0.5, 3) @ v)


def planned_attention_call() -> Call:
    handle = Case("plan", run_now=False).module("transformer:EncoderLayer", hidden_size=8, num_heads=2)
    return Call("transformer:EncoderLayer.forward", ModuleSpec(handle.path, handle.kwargs, handle.params),
                [torch.randn(2, 5, 8)])


def test_a_stand_in_answers_only_its_targets_callees_with_its_modules_parameters():
    call = planned_attention_call()
    server = standins.Server(call.target, 0, call.module.state)
    params = {key[len("self_attention."):]: value for key, value in call.module.state.items()
              if key.startswith("self_attention.")}
    x = torch.randn(2, 5, 8)
    _, (output, weights) = server.request("transformer:MultiHeadAttention.forward", params,
                                          {"num_heads": 2, "causal": False}, [x, x, x])
    torch.testing.assert_close(output, oracles.attention(params, {"num_heads": 2}, x, x, x)[0])
    for name, params_, args in (("transformer:EncoderLayer.forward", {}, [x]), ("mamba:pscan", {}, [x, x]),
                                ("transformer:MultiHeadAttention.forward",
                                 {key: torch.zeros(3) for key in params}, [x, x, x])):
        try:
            server.request(name, params_, {"num_heads": 2}, args)
        except standins.Refused:
            continue
        raise AssertionError(f"{name} answered")


def test_a_stand_ins_backward_pass_is_the_oracles_own_gradient():
    server = standins.Server("mamba:MambaBlock.selective_scan")
    log_a, b = -torch.rand(2, 7, 3, dtype=torch.float64), torch.randn(2, 7, 3, dtype=torch.float64)
    request_id, value = server.request("mamba:pscan", {}, {}, [log_a, b], [0, 1], [], keep=True)
    weights = torch.randn_like(value)
    grad_log_a, grad_b = server.backward(request_id, [weights])
    leaves = log_a.clone().requires_grad_(), b.clone().requires_grad_()
    (oracles.scan(*leaves) * weights).sum().backward()
    torch.testing.assert_close(grad_log_a, leaves[0].grad)
    torch.testing.assert_close(grad_b, leaves[1].grad)


def test_points_are_read_from_the_markers_with_their_readme_sections():
    """The file reader (which never imports a test) against the marks pytest itself attaches on import."""
    import importlib

    marked = points.markers(points.Path(__file__).parent / "graded")
    assert marked and all(section.startswith(("Q1.", "Q2.")) for _, _, _, section in marked)
    attached = {}
    for stem in {file for file, _, _, _ in marked}:
        module = importlib.import_module(f"graded.{stem}")
        for name, function in vars(module).items():
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "points":
                    attached[(stem, name)] = float(mark.args[0])
    assert {(file, name): value for file, name, value, _ in marked} == attached
    assert points.total(points.Path(__file__).parents[1]) == sum(attached.values())
