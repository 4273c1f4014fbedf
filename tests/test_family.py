"""The state-space family as models (models/family.py): S6 against its loop, Mamba with the S6 mixer against
models/mamba.py, causality of every member, the gMLP's limits, and the names a config can give."""

import pytest
import torch

from models.family import MODELS, FamilySeq2Seq, GatedMLPBlock, MambaMixerBlock, SelectiveSSM
from models.mamba import MambaBlock
from training.config import FAMILY_MODELS, build_config
from training.module import build_model
from training.piglatin import Seq2SeqModule

EOS = 28


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def small(model: str, **options) -> FamilySeq2Seq:
    return FamilySeq2Seq(model, 29, EOS, hidden_size=16, num_layers=2, state_size=4, max_length=32, **options)


@pytest.mark.parametrize("scan", ["pair_scan", "sscan"])
def test_s6_scan_equals_its_step_by_step_loop(scan):
    layer = SelectiveSSM(6, state_size=4, scan=scan, dt_min=0.05, dt_max=0.5)
    u = torch.randn(2, 15, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer(u), layer.recurrent(u), atol=1e-5, rtol=1e-5)


@pytest.mark.needs_solution
def test_mamba_with_the_s6_mixer_is_models_mamba_block(finished_models):
    ours = MambaMixerBlock(16, "s6", state_size=4, max_length=32, scan="pair_scan", dt_min=1e-3, dt_max=1e-1)
    theirs = MambaBlock(16, state_size=4, scan="pair_scan")
    with torch.no_grad():
        for name in ("in_proj", "conv1d", "out_proj"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
        for name in ("x_proj", "dt_proj", "A_log", "D"):
            source, target = getattr(ours.mixer, name), getattr(theirs, name)
            (target.load_state_dict(source.state_dict()) if isinstance(source, torch.nn.Module) else target.copy_(source))
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), x + theirs(ours.norm(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_every_member_is_causal_and_gives_logits_per_target_position(model):
    network = small(model).eval()
    source, target = torch.randint(0, 27, (2, 5)), torch.randint(0, 27, (2, 7))
    changed = target.clone()
    changed[:, 4:] = torch.randint(0, 27, (2, 3))
    with torch.no_grad():
        logits, other = network(source, target), network(source, changed)
    assert logits.shape == (2, 7, 29)
    torch.testing.assert_close(logits[:, :4], other[:, :4])
    assert not torch.allclose(logits[:, 4:], other[:, 4:])


@pytest.mark.parametrize("model", MODELS)
def test_every_member_learns_a_batch(model):
    network = small(model)
    source, target = torch.randint(0, 27, (8, 5)), torch.randint(0, 27, (8, 6))
    optimizer = torch.optim.AdamW(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(network(source, target).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], f"{model}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_gated_mlp_refuses_a_sequence_longer_than_its_mixing_matrix_in_one_line():
    with pytest.raises(ValueError, match="raise max_length"):
        GatedMLPBlock(8, max_length=4)(torch.randn(1, 5, 8))


def test_config_lists_exactly_the_family_models():
    assert tuple(FAMILY_MODELS) == MODELS


@pytest.mark.parametrize("model", MODELS)
def test_a_config_builds_every_member(model):
    network = build_model(build_config(None, ["--model", model, "--hidden_size", "16", "--state_size", "4"]))
    assert isinstance(network, FamilySeq2Seq) and network.model == model


def test_only_the_ssm_dynamics_skip_weight_decay():
    network = small("s4d_lin")
    kept = {name.rsplit(".", 1)[-1] for name, p in network.named_parameters() if getattr(p, "no_weight_decay", False)}
    assert kept == {"log_A_real", "A_imag", "log_dt"}


@pytest.mark.usefixtures("single_torch_thread")
def test_a_family_member_trains_through_main_and_its_optimizer_spares_the_ssm_dynamics(tiny_data_file, tmp_path):
    from training.piglatin import train

    options = {"model": "s4d_lin", "data": tiny_data_file, "val_fraction": 0.25, "hidden_size": 16, "num_layers": 1,
               "state_size": 4, "epochs": 1, "out_dir": tmp_path, "run_name": "tiny", "accelerator": "cpu",
               "num_samples": 2}
    run_dir = train(build_config(None, [f"--{name}={value}" for name, value in options.items()]), quiet=True)
    assert (run_dir / "metrics.json").is_file()
    module = Seq2SeqModule(vars(build_config(None, ["--model", "s4d_lin", "--hidden_size", "16"])))
    module.trainer = type("Trainer", (), {"estimated_stepping_batches": 10})()
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert [group["weight_decay"] for group in groups] == [0.01, 0.0]
    marked = [p for p in module.model.parameters() if getattr(p, "no_weight_decay", False)]
    assert marked and all(any(p is kept for kept in groups[1]["params"]) for p in marked)
    assert not any(getattr(p, "no_weight_decay", False) for p in groups[0]["params"])


@pytest.mark.parametrize("model", ["gated_mlp", "s4_low_rank"])
def test_decoding_budget_fills_a_length_bound_members_table_exactly(model):
    """[source, EOS, SOS, generated] must fit in max_length: the budget is what is left after the source, so
    that many steps run and one more would not fit."""
    from models.decoding import FullRerun, decode_budget, model_budget

    member = small(model).eval()  # max_length 32
    assert model_budget(small("s4d_real"), 10) == decode_budget(10)  # no table: the full budget
    budget = model_budget(member, 10)
    decoder = FullRerun(member, torch.randint(1, 27, (2, 10)))
    token = torch.full((2,), 1)
    with torch.no_grad():
        for _ in range(budget):
            token = decoder.step(token).argmax(dim=-1)
        with pytest.raises(ValueError, match="raise max_length"):
            decoder.step(token)


def family_options(tmp_path, data, **options) -> list:
    settings = {"data": data, "val_fraction": 0.25, "hidden_size": 16, "num_layers": 1, "state_size": 4,
                "epochs": 1, "out_dir": tmp_path, "accelerator": "cpu", "num_samples": 2, **options}
    return [f"--{name}={value}" for name, value in settings.items()]


@pytest.mark.usefixtures("single_torch_thread")
def test_a_max_length_too_short_for_the_word_pairs_is_refused_before_training(tiny_data_file, tmp_path, capsys):
    import main

    status = main.main(family_options(tmp_path, tiny_data_file, model="gated_mlp", max_length=8))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "max_length=8 is too short" in err and "use at least" in err
    assert not any(tmp_path.iterdir()), "nothing may be written for a refused run"


@pytest.mark.usefixtures("single_torch_thread")
def test_translate_refuses_a_word_whose_translation_does_not_fit_and_decodes_one_that_does(tiny_data_file,
                                                                                          tmp_path, capsys):
    import main
    from training.piglatin import train

    needed = 2 + max(len(source) + len(target) for source, target in
                     (line.split() for line in tiny_data_file.read_text().splitlines() if line.strip()))
    run_dir = train(build_config(None, family_options(tmp_path, tiny_data_file, model="gated_mlp",
                                                      max_length=needed, run_name="tight")), quiet=True)
    capsys.readouterr()
    assert main.main(["translate", "--checkpoint", str(run_dir), "a" + "b" * (needed // 2)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not fit in this model's tables" in err
    assert main.main(["translate", "--checkpoint", str(run_dir), "at"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


@pytest.mark.parametrize("model", ["s4d_lin", "s4d_inv", "s4_low_rank", "mamba_s4d_inv"])
def test_an_odd_state_size_for_a_member_with_conjugate_pairs_is_refused_in_one_line(model, capsys):
    import main

    assert main.main(["--model", model, "--state_size", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state_size must be even" in err


@pytest.mark.parametrize("option, value", [("discretization", "bilinear"), ("alpha", "0.3"), ("A_init", "constant")])
def test_mamba_only_options_given_to_a_family_member_are_refused_not_ignored(option, value, capsys):
    import main

    assert main.main(["--model", "mamba_s6", f"--{option}", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--{option} applies to --model mamba only" in err
