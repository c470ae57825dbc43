"""Training probes (shared/probes) on constructed inputs with hand-computed values, z-loss, and the trainer's hooks:
probes off change nothing, probes on do not change training, probe state survives a resume."""
import json
import math
import warnings

import pytest
import torch
from torch import nn

from fixtures_data import write_wikitext2
from run_helpers import run_killed_at
from shared.config import ConfigError, resolve_run_config
from shared.data import LMBatches
from shared.probes import PROBES, FixedBatch, ProbeSet, create_probes, state_bytes_per_param
from shared.registry import UnknownNameError
from shared.train import build, run
from shared.train.device import seed_everything
from shared.train.loop import _z_loss


def batch_of(model, x, y=None):
    ce = lambda logits, target: nn.functional.cross_entropy(logits, target).item()
    return FixedBatch(x, y, model, ce)


def linear(weight, bias=None):
    weight = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


class Blocks(nn.Module):
    """x -> blocks[0] -> blocks[1] -> ... -> head."""

    def __init__(self, blocks, head):
        super().__init__()
        self.blocks, self.head = nn.ModuleList(blocks), head

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


# --- weights ---------------------------------------------------------------------------------------------------

def test_weight_norm_known_weights():
    model = nn.Sequential(linear([[3.0, 0.0], [0.0, 4.0]], bias=[0.0, 12.0]))
    values = PROBES.create("weight_norm", model).after_step(1)
    assert values["norm"] == {"0.weight": pytest.approx(5.0), "0.bias": pytest.approx(12.0)}
    assert values["total"] == pytest.approx(13.0)  # sqrt(25 + 144)


def test_weight_norm_final_metric_counts_matrices_only():
    model = nn.Sequential(linear([[3.0, 0.0], [0.0, 4.0]], bias=[0.0, 12.0]))
    assert PROBES.create("weight_norm", model).final_metrics() == {"final_weight_norm": pytest.approx(5.0)}


def test_effective_lr_final_metric_is_the_mean_over_probe_steps_and_survives_a_reload():
    model = nn.Sequential(linear([[3.0, 4.0]]), nn.LayerNorm(1))  # ||w||^2 = 25
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    probe = PROBES.create("effective_lr", model, opt, scope="all")
    assert probe.final_metrics() == {"mean_effective_lr": None}
    probe.before_step(1)
    probe.after_step(1)  # 0.5 / 25 = 0.02
    opt.param_groups[0]["lr"] = 1.0
    probe.before_step(2)
    probe.after_step(2)  # 1.0 / 25 = 0.04
    assert probe.final_metrics()["mean_effective_lr"] == pytest.approx(0.03)
    again = PROBES.create("effective_lr", model, opt, scope="all")
    again.load_state_dict(probe.state_dict())
    assert again.final_metrics() == probe.final_metrics()


def test_effective_step_plain_sgd_step_of_known_size():
    model = nn.Sequential(linear([[3.0, 4.0]], bias=[0.0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    probe = PROBES.create("effective_step", model, opt)
    model[0].weight.grad = torch.tensor([[0.6, 0.8]])  # ||g|| = 1
    model[0].bias.grad = torch.tensor([2.0])
    probe.before_step(1)
    opt.step()
    values = probe.after_step(1)
    # ||w_t - w_{t-1}|| / ||w_{t-1}|| = lr ||g|| / ||w|| = 0.5 * 1 / 5; the zero bias has no relative step
    assert values["relative"] == {"0.weight": pytest.approx(0.1), "0.bias": None}
    assert values["total"] == pytest.approx(math.sqrt(0.5 ** 2 + 1.0 ** 2) / 5)


def test_effective_step_final_metric_averages_the_scoped_weights_over_probe_steps():
    # conv (no bias) -> BN -> linear head: only the conv weight is followed by a norm
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.fill_(2.0)  # ||w|| = 2
        model[3].weight.fill_(0.5)  # ||w|| = 1
        model[3].bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    probe = PROBES.create("effective_step", model, opt, batch_of(model, torch.randn(3, 1, 2, 2)), scope="normalized")
    assert probe.names == ["0.weight"]
    assert probe.final_metrics() == {"mean_effective_step": None}
    for t, g in ((1, 1.0), (2, -2.0)):  # steps of 0.5 and 1.0 on the conv weight, ||w_{t-1}|| = 2 then 1.5
        model[0].weight.grad = torch.full_like(model[0].weight, g)
        model[3].weight.grad = torch.full_like(model[3].weight, 10.0)  # outside the scope: must not count
        model[3].bias.grad = torch.zeros_like(model[3].bias)
        probe.before_step(t)
        opt.step()
        probe.after_step(t)
    assert probe.final_metrics()["mean_effective_step"] == pytest.approx((0.5 / 2 + 1.0 / 1.5) / 2)
    again = PROBES.create("effective_step", model, opt, scope="all")
    assert again.names == ["0.weight", "3.weight"]
    again.load_state_dict(probe.state_dict())
    assert again.final_metrics() == probe.final_metrics()
    with pytest.raises(ValueError, match="needs a fixed batch"):
        PROBES.create("effective_step", model, opt, scope="normalized")
    with pytest.raises(ValueError, match="scope must be"):
        PROBES.create("effective_step", model, opt, scope="some")


def test_effective_lr_finds_weights_followed_by_norms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(3),
                          nn.Flatten(), nn.Linear(12, 5))
    with torch.no_grad():
        model[0].weight.fill_(0.5)  # ||w||^2 = 0.25 * 54
        model[3].weight.fill_(-2.0)  # ||w||^2 = 4 * 81
    opt = torch.optim.SGD([{"params": [model[0].weight], "lr": 0.1},
                           {"params": [model[3].weight, model[7].weight, model[7].bias], "lr": 0.2}])
    batch = batch_of(model, torch.randn(4, 2, 4, 4))
    probe = PROBES.create("effective_lr", model, opt, batch)
    probe.before_step(1)
    values = probe.after_step(1)["effective_lr"]
    assert values == {"0.weight": pytest.approx(0.1 / (0.25 * 54)), "3.weight": pytest.approx(0.2 / (4 * 81))}
    assert model.training  # the tracing pass restored train mode
    every = PROBES.create("effective_lr", model, opt, batch, scope="all")
    every.before_step(1)
    assert set(every.after_step(1)["effective_lr"]) == {"0.weight", "3.weight", "7.weight"}


def test_effective_lr_ignores_pre_ln_residual_branch():
    class PreLN(nn.Module):  # x + fc(ln(x)): fc's output reaches the next norm only through the residual add
        def __init__(self):
            super().__init__()
            self.ln, self.fc, self.ln_f = nn.LayerNorm(4), nn.Linear(4, 4), nn.LayerNorm(4)

        def forward(self, x):
            return self.ln_f(x + self.fc(self.ln(x)))

    model = PreLN()
    probe = PROBES.create("effective_lr", model, torch.optim.SGD(model.parameters(), lr=0.1),
                          batch_of(model, torch.randn(3, 4)))
    assert probe.names == []


# --- gradients ---------------------------------------------------------------------------------------------------

def spike_sequence(probe, layer, steps, due_at, spike_step, spike=100.0, start=1):
    out = []
    for t in range(start, steps + 1):
        g = torch.ones(1, 4)
        if t == spike_step:
            g[0, 2] = spike
        layer.weight.grad = g
        values = probe.on_gradients(t, t in due_at)
        assert (values is not None) == (t in due_at)
        out.append(values)
    return [v for v in out if v is not None]


def test_grad_spikes_detects_one_constructed_spike():
    layer = nn.Linear(4, 1, bias=False)
    probe = PROBES.create("grad_spikes", nn.Sequential(layer), thresholds=[10, 50, 200])
    quiet, spiky = spike_sequence(probe, layer, 6, due_at={3, 6}, spike_step=6)
    # constant gradient 1: bias-corrected v_hat = 1, so r = 1 everywhere (steps 2-3: 2 x 4 entries tested)
    assert quiet["max_ratio"] == pytest.approx(1.0) and quiet["count_above"] == {"10": 0, "50": 0, "200": 0}
    assert quiet["steps"] == 3
    # steps 4-6: 12 entries tested, one of them |g| / sqrt(v_hat) = 100
    assert spiky["max_ratio"] == pytest.approx(100.0, rel=1e-5)
    assert spiky["count_above"] == {"10": 1, "50": 1, "200": 0}
    assert spiky["frac_above"]["50"] == pytest.approx(1 / 12)


def test_grad_spikes_without_bias_correction_is_spams_test():
    layer = nn.Linear(4, 1, bias=False)
    probe = PROBES.create("grad_spikes", nn.Sequential(layer), beta=0.9, bias_correction=False)
    (values,) = spike_sequence(probe, layer, 4, due_at={4}, spike_step=4)
    # v_3 = 1 - 0.9^3 after three gradients of 1; r = 100 / sqrt(v_3)
    assert values["max_ratio"] == pytest.approx(100.0 / math.sqrt(1 - 0.9 ** 3), rel=1e-5)


def test_grad_spikes_state_dict_round_trip():
    layer = nn.Linear(4, 1, bias=False)
    whole = spike_sequence(PROBES.create("grad_spikes", nn.Sequential(layer)), layer, 6, {6}, 5)
    first = PROBES.create("grad_spikes", nn.Sequential(layer))
    spike_sequence(first, layer, 3, set(), 5)
    second = PROBES.create("grad_spikes", nn.Sequential(layer))
    second.load_state_dict(first.state_dict())
    assert spike_sequence(second, layer, 6, {6}, 5, start=4) == whole


def test_grad_norms_per_tensor_and_per_block():
    model = Blocks([linear([[1.0, 0.0], [0.0, 1.0]]), linear([[1.0, 0.0], [0.0, 1.0]])], linear([[1.0, 1.0]]))
    grads = {"blocks.0.weight": [[3.0, 0.0], [0.0, 4.0]], "blocks.1.weight": [[0.0, 0.0], [5.0, 12.0]],
             "head.weight": [[1.0, 0.0]]}
    for name, p in model.named_parameters():
        p.grad = torch.tensor(grads[name])
    probe = PROBES.create("grad_norms", model)
    assert probe.on_gradients(1, due=False) is None
    values = probe.on_gradients(2, due=True)
    assert values["block_norm"] == {"blocks.0": pytest.approx(5.0), "blocks.1": pytest.approx(13.0),
                                    "head": pytest.approx(1.0)}
    assert values["total"] == pytest.approx(math.sqrt(25 + 169 + 1))


# --- optimizer state ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make_opt,bytes_per_param", [
    (lambda ps: torch.optim.Adam(ps, lr=1e-3), (2 * 4 * 8 + 2 * 4) / 8),  # m, v: 4 B each; a float32 step per tensor
    (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), 4.0),  # momentum buffer
    (lambda ps: torch.optim.SGD(ps, lr=0.1), 0.0),  # stateless
], ids=["adam", "sgd_momentum", "sgd"])
def test_optimizer_state_bytes(make_opt, bytes_per_param):
    model = nn.Linear(3, 2)  # 6 + 2 = 8 parameters in 2 tensors
    opt = make_opt(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    values = PROBES.create("optimizer_state", model, opt).after_step(1)
    assert values["n_params"] == 8 and values["bytes_per_param"] == pytest.approx(bytes_per_param)
    assert values["total_bytes"] == bytes_per_param * 8 and state_bytes_per_param(opt) == bytes_per_param


# --- forward probes on the fixed batch ---------------------------------------------------------------------------

def test_activations_variance_and_max_per_block():
    model = Blocks([linear([[2.0, 0.0], [0.0, 2.0]]), linear([[1.0, 0.0], [0.0, -3.0]])], linear([[1.0, 1.0]]))
    probes = create_probes({"every": 1, "names": ["activations"]}, model, None,
                           batch_of(model, torch.tensor([[1.0, 2.0], [3.0, 4.0]])))
    (record,) = probes.after_step(1)
    assert record["probe"] == "activations" and record["step"] == 1
    # block 0: [[2, 4], [6, 8]], mean 5, Var = (9+1+1+9)/4; block 1: [[2, -12], [6, -24]], mean -7, Var = 564/4
    assert record["variance"] == {"blocks.0": pytest.approx(5.0), "blocks.1": pytest.approx(141.0)}
    assert record["max_abs"] == {"blocks.0": pytest.approx(8.0), "blocks.1": pytest.approx(24.0)}
    assert model.training


def test_activations_fall_back_to_top_level_children():
    model = nn.Sequential(linear([[1.0, 1.0]]), nn.ReLU())
    values = PROBES.create("activations", model, None, batch_of(model, torch.tensor([[1.0, 2.0], [-5.0, 1.0]])))
    values = values.on_fixed_batch(values.batch)
    assert values["max_abs"] == {"0": pytest.approx(4.0), "1": pytest.approx(3.0)}  # [3, -4] -> relu [3, 0]


def test_layer_skip_delta_loss():
    torch.manual_seed(0)
    identity = linear([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    model = Blocks([identity, nn.Linear(3, 3), nn.Linear(3, 3)], nn.Linear(3, 4))
    x, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    ce = nn.functional.cross_entropy
    probe = PROBES.create("layer_skip", model, None, batch_of(model, x, y))
    with torch.no_grad():
        values = probe.on_fixed_batch(probe.batch)
        full = ce(model(x), y).item()
        without_1 = ce(model.head(model.blocks[2](model.blocks[0](x))), y).item()
    assert values["loss"] == pytest.approx(full)
    assert values["delta_loss"]["blocks.0"] == 0.0  # already the identity
    assert values["delta_loss"]["blocks.1"] == pytest.approx(without_1 - full)
    assert len(values["delta_loss"]) == 3
    with pytest.raises(ValueError, match="blocks"):
        PROBES.create("layer_skip", nn.Linear(2, 2), None, batch_of(model, x, y))


class StandInAttention(nn.Module):
    """The attention-stats contract (shared/probes/attention.py) around non-causal attention of x with itself."""

    def __init__(self, heads: int = 0):
        super().__init__()
        self.record_stats, self.last_stats, self.heads = False, None, heads

    def forward(self, x):  # x: (B, L, d)
        logits = x @ x.transpose(1, 2) / math.sqrt(x.shape[-1])
        p = logits.softmax(-1)
        if self.record_stats:
            entropy = -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()
            self.last_stats = {"entropy": entropy, "max_logit": logits.max().item()}
            if self.heads:  # the optional per-head list: uniform attention over L keys is a ratio of 1 in each head
                self.last_stats["head_entropy_ratio"] = [entropy / math.log(x.shape[1])] * self.heads
        return p @ x


def test_attention_entropy_of_uniform_attention_is_log_length():
    model = Blocks([StandInAttention(), StandInAttention()], nn.Identity())
    x = torch.ones(2, 5, 4)  # every logit = 4 / sqrt(4) = 2: uniform attention over L = 5 keys
    probe = PROBES.create("attention", model, None, batch_of(model, x))
    values = probe.on_fixed_batch(probe.batch)
    assert values["entropy"] == {"blocks.0": pytest.approx(math.log(5)), "blocks.1": pytest.approx(math.log(5))}
    assert values["max_logit"] == {"blocks.0": pytest.approx(2.0), "blocks.1": pytest.approx(2.0)}
    assert "head_entropy_ratio" not in values  # the stand-ins report no per-head list
    assert not any(block.record_stats for block in model.blocks)  # switched off again after the probe's pass
    with pytest.raises(ValueError, match="record_stats"):
        PROBES.create("attention", nn.Linear(2, 2), None, batch_of(model, x))


def test_attention_probe_names_each_head():
    model = Blocks([StandInAttention(heads=2), StandInAttention(heads=2)], nn.Identity())
    x = torch.ones(2, 5, 4)
    probe = PROBES.create("attention", model, None, batch_of(model, x))
    heads = probe.on_fixed_batch(probe.batch)["head_entropy_ratio"]
    assert list(heads) == ["blocks.0.h0", "blocks.0.h1", "blocks.1.h0", "blocks.1.h1"]
    assert all(h == pytest.approx(1.0) for h in heads.values())


def test_output_logits_log_partition_on_constructed_logits():
    """log Z = logsumexp over the last axis: uniform logits c over K classes give c + log K; log-probabilities give
    0."""
    head = nn.Identity()
    logits = torch.tensor([[[2.0, 2.0, 2.0, 2.0], [-1.0, -1.0, -1.0, -1.0]],
                           [list(torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).tolist()), [0.0, 0.0, 0.0, -5.0]]])
    probe = PROBES.create("output_logits", head, None, batch_of(head, logits))
    values = probe.on_fixed_batch(probe.batch)
    log_z = [2.0 + math.log(4), -1.0 + math.log(4), 0.0, math.log(3 + math.exp(-5.0))]
    assert values["log_z_mean"] == pytest.approx(sum(log_z) / 4)
    assert values["log_z_abs_mean"] == pytest.approx(sum(abs(v) for v in log_z) / 4)
    assert values["max_abs_logit"] == pytest.approx(5.0)


def test_forgetting_tracks_the_loss_on_one_training_batch():
    """The batch of step t_B = 2, scored at probe steps 1, 2, 3 while the weights change by hand (before step 2 they
    are still step 1's): the loss before t_B is recorded but does not count; before = L at w_{t_B - 1}, after = L at
    t_B, end = L at the last step; the excess rise subtracts the held-out reference batch's loss at both steps."""
    model = linear([[1.0, 0.0], [0.0, 1.0]])
    ce = nn.functional.cross_entropy
    x_b, y_b = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    x_r, y_r = torch.tensor([[1.0, 0.5]]), torch.tensor([0])
    asked = []
    batch = FixedBatch(x_r, y_r, model, lambda logits, target: ce(logits, target).item(),
                       train_batch=lambda t: asked.append(t) or (x_b, y_b))
    probe = PROBES.create("forgetting", model, None, batch, at_step=2)
    records = []
    for step, scale in ((1, 0.5), (2, 2.0), (3, 1.0)):
        probe.before_step(step)  # the weights are still those of the previous step
        with torch.no_grad():
            model.weight.copy_(scale * torch.eye(2))
        probe.after_step(step)
        records.append(probe.on_fixed_batch(batch))
    b = [ce(s * x_b, y_b).item() for s in (0.5, 2.0, 1.0)]
    r = [ce(s * x_r, y_r).item() for s in (0.5, 2.0, 1.0)]
    assert [x["loss"] for x in records] == pytest.approx(b)
    assert [x["reference_loss"] for x in records] == pytest.approx(r)
    assert asked == [2]  # the step-2 batch, fetched once
    assert probe.final_metrics() == {
        "forgetting_loss_before": pytest.approx(b[0]), "forgetting_loss_after": pytest.approx(b[1]),
        "forgetting_loss_end": pytest.approx(b[2]), "forgetting_dip": pytest.approx(b[1] - b[0]),
        "forgetting_rise": pytest.approx(b[2] - b[1]),
        "forgetting_excess_rise": pytest.approx((b[2] - r[2]) - (b[1] - r[1]))}
    assert b[1] < b[0] and b[2] > b[1]  # the dip at t_B, then the loss on B rose again
    assert model.training  # before_step's pass restored the train mode
    with pytest.raises(ValueError, match="not a probe step"):
        ProbeSet({"forgetting": probe}, every=4, model=model, batch=batch)
    with pytest.raises(ValueError, match="train_batch"):
        PROBES.create("forgetting", model, None, batch_of(model, torch.zeros(1, 2)), at_step=2)


# --- configuration -----------------------------------------------------------------------------------------------

def test_unknown_probe_name_lists_known_ones():
    with pytest.raises(UnknownNameError, match="weight_norm"):
        create_probes({"every": 1, "names": ["weight_nrom"]}, nn.Linear(2, 2))
    with pytest.raises(UnknownNameError, match="grad_spikes"):
        create_probes({"every": 1, "names": ["weight_norm"], "kwargs": {"grad_spike": {}}}, nn.Linear(2, 2))
    with pytest.raises(UnknownNameError, match="weight_norm"):  # also when off
        create_probes({"every": 0, "names": ["weight_nrom"]}, nn.Linear(2, 2))
    never = lambda: pytest.fail("the fixed batch is built although probes are off")
    assert create_probes({"every": 0, "names": ["weight_norm"]}, nn.Linear(2, 2), None, never) is None


def test_probe_and_z_loss_config_validated():
    for bad in ({"probes": {"every": -1}}, {"probes": {"evrey": 2}}, {"probes": {"names": "weight_norm"}},
                {"z_loss": -1e-4}):
        with pytest.raises(ConfigError):
            resolve_run_config({"train": {"steps": 1, **bad}})


def test_z_loss_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    # log Z = log 2 and log 4 = 2 log 2: mean(log^2 Z) = (1 + 4) / 2 log^2 2
    assert _z_loss(logits).item() == pytest.approx(2.5 * math.log(2) ** 2)
    assert _z_loss(logits.reshape(1, 2, 2)).item() == pytest.approx(2.5 * math.log(2) ** 2)  # LM: (B, T, V)


# --- the trainer -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
    """Data root plus two runs shared by the trainer tests: ``plain`` (no probes) and ``probed`` (LM_PROBES)."""
    root = tmp_path_factory.mktemp("probe_runs")
    write_wikitext2(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_DATA_DIR", str(root / "data"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fixture data has unknown checksums
            finals = {"plain": run(lm_cfg(), root / "plain"), "probed": run(lm_cfg(probes=LM_PROBES), root / "probed")}
        yield root, finals


@pytest.fixture
def data_root(lm_runs, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_DIR", str(lm_runs[0] / "data"))
    warnings.simplefilter("ignore")
    return lm_runs[0] / "data"


def lm_cfg(**train):
    return resolve_run_config({
        "data": {"dataset": "wikitext2", "download": False, "seq_len": 16},
        "model": {"name": "gpt", "kwargs": {"n_layer": 2, "n_head": 2, "d_model": 16, "block_size": 16,
                                            "dropout": 0.2}},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": 6, "batch_size": 4, "eval_batch_size": 8, "log_every": 1, **train},
        "seed": 1, "device": "cpu",
    })


LM_PROBES = {"every": 2, "names": ["weight_norm", "effective_step", "effective_lr", "grad_spikes", "grad_norms",
                                   "optimizer_state", "activations", "layer_skip", "attention", "output_logits",
                                   "forgetting"],
             "kwargs": {"effective_lr": {"scope": "all"}, "forgetting": {"at_step": 2}}, "batch_size": 3}


def rows(out_dir):
    return [json.loads(ln) for ln in (out_dir / "metrics.jsonl").read_text().splitlines()]


def training_view(records):
    """What training produced, without timings: train/eval records minus wall-clock fields."""
    drop = {"wall_time", "examples_per_s"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records if r["kind"] != "probe"]


def test_probes_off_identical_to_no_probes_key(lm_runs, data_root, tmp_path):
    root, finals = lm_runs
    off = run(lm_cfg(probes={"every": 0, "names": ["weight_norm", "activations"]}, z_loss=0.0), tmp_path / "off")
    assert off["metrics"] == finals["plain"]["metrics"]
    assert training_view(rows(tmp_path / "off")) == training_view(rows(root / "plain"))
    assert not any(r["kind"] == "probe" or "z_loss" in r for r in rows(tmp_path / "off"))


def test_probes_on_do_not_change_training(lm_runs):
    root, finals = lm_runs
    # dropout RNG, weights, BN/optimizer state untouched by the probes
    probe_finals = {"final_weight_norm", "mean_effective_lr", "mean_effective_step",  # the probes' own, added
                    "forgetting_loss_before", "forgetting_loss_after", "forgetting_loss_end", "forgetting_dip",
                    "forgetting_rise", "forgetting_excess_rise"}
    assert set(finals["probed"]["metrics"]) - set(finals["plain"]["metrics"]) <= probe_finals
    assert {k: v for k, v in finals["probed"]["metrics"].items() if k not in probe_finals} == finals["plain"]["metrics"]
    assert finals["probed"]["metrics"]["final_weight_norm"] > 0
    assert training_view(rows(root / "probed")) == training_view(rows(root / "plain"))
    records = [r for r in rows(root / "probed") if r["kind"] == "probe"]
    assert {(r["probe"], r["step"]) for r in records} == {(n, s) for n in LM_PROBES["names"] for s in (2, 4, 6)}
    by = {(r["probe"], r["step"]): r for r in records}
    assert set(by["activations", 2]["variance"]) == {"blocks.0", "blocks.1"}
    assert set(by["layer_skip", 4]["delta_loss"]) == {"blocks.0", "blocks.1"}
    assert set(by["attention", 4]["entropy"]) == {"blocks.0.attn", "blocks.1.attn"}
    # causal attention over at most 16 keys: 0 <= H <= log 16
    assert all(0 <= h <= math.log(16) for h in by["attention", 4]["entropy"].values())
    assert by["output_logits", 6]["max_abs_logit"] > 0 and by["output_logits", 6]["log_z_abs_mean"] >= 0
    m = finals["probed"]["metrics"]
    assert (m["forgetting_loss_after"], m["forgetting_loss_end"]) == (by["forgetting", 2]["loss"],
                                                                     by["forgetting", 6]["loss"])
    assert m["forgetting_rise"] == pytest.approx(m["forgetting_loss_end"] - m["forgetting_loss_after"])
    assert by["grad_spikes", 2]["steps"] == 2 and by["grad_spikes", 4]["steps"] == 2
    # results' NON_LAYER_MAPPINGS names exactly the record keys that are mappings over something other than layers:
    # each listed key is a mapping in its probe's record, and a mapping keyed by numbers (thresholds) is listed
    from shared.results.probes import NON_LAYER_MAPPINGS
    assert NON_LAYER_MAPPINGS and all(isinstance(by[probe, 6][key], dict)
                                      for probe, keys in NON_LAYER_MAPPINGS.items() for key in keys)
    numeric_keyed = {(r["probe"], key) for r in records for key, v in r.items()
                     if isinstance(v, dict) and v and all(k.replace(".", "", 1).isdigit() for k in v)}
    assert numeric_keyed and numeric_keyed <= {(p, k) for p, keys in NON_LAYER_MAPPINGS.items() for k in keys}
    # results' UNPLOTTED_KEYS names keys the probes really record (a renamed key would be drawn again)
    from shared.results.probes import UNPLOTTED_KEYS
    assert all(key in by[probe, 6] for probe, keys in UNPLOTTED_KEYS.items() for key in keys)
    assert "blocks.1.attn.c_attn.weight" in by["weight_norm", 6]["norm"]
    # AdamW: m and v (2 x 4 bytes) per parameter plus one 4-byte step per tensor
    n_tensors = len(by["weight_norm", 6]["norm"])
    state = by["optimizer_state", 6]
    assert state["total_bytes"] == 8 * state["n_params"] + 4 * n_tensors
    assert finals["probed"]["metrics"]["optimizer_state_bytes_per_param"] == pytest.approx(state["bytes_per_param"])


def test_probe_records_survive_resume(lm_runs, data_root, tmp_path, monkeypatch):
    cfg = lambda: lm_cfg(probes=LM_PROBES, checkpoint_every=2)  # checkpoints do not change the results
    run_killed_at(cfg(), tmp_path / "resumed", LMBatches, 5, monkeypatch)
    run(cfg(), tmp_path / "resumed", resume=True)
    probe_rows = lambda d: [r for r in rows(d) if r["kind"] == "probe"]
    assert probe_rows(tmp_path / "resumed") == probe_rows(lm_runs[0] / "probed")  # grad_spikes' EMA is checkpointed


def test_z_loss_added_and_logged(lm_runs, data_root, tmp_path):
    run(lm_cfg(z_loss=0.1), tmp_path / "z")
    with_z, plain = ([r for r in rows(d) if r["kind"] == "train"] for d in (tmp_path / "z", lm_runs[0] / "plain"))
    # step 1's forward sees the initial weights (and dropout masks): rebuild them, hand-compute the term on batch 0
    seed_everything(lm_cfg()["seed"])
    _, _, model, batches, _ = build(lm_cfg(), torch.device("cpu"))
    x, _ = batches.batch(0)
    with torch.no_grad():
        log_z = torch.logsumexp(model(x).float(), dim=-1)  # (B, T): one log Z per predicted token
    assert with_z[0]["z_loss"] == pytest.approx(0.1 * log_z.pow(2).mean().item(), rel=1e-5)
    assert with_z[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-6)  # "loss" stays the cross-entropy
    assert with_z[-1]["loss"] != plain[-1]["loss"] and "z_loss" not in plain[0]  # the term changed training
