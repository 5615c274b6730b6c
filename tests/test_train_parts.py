"""The trainer's parts without a trial run: the loss and step core, rotations of a batch, the epoch plan and
training fraction, the device fallback, config checks, reporters, and the final evaluation's rotated AUCs and
equivariance deviations (on the real npz hit graphs)."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch

from equitrack.reporter import NullReporter
from tracker.data.transforms import rotate
from tracker.train.config import ConfigError, trial_from_dict
from tracker.train.data import auto_pos_weight, epoch_plan, resolve_device, select_fraction
from tracker.train.step import rotate_batch


def test_reporters_implement_fail(capsys):
    """``fail`` is part of the Reporter protocol; the shipped reporters implement it."""
    from equitrack.reporter import Reporter
    from tracker.train.console import ConsoleReporter

    assert "fail" in Reporter.__dict__
    for reporter in (NullReporter(), ConsoleReporter(disable_progress=True)):
        assert isinstance(reporter, Reporter)
        reporter.fail(error=RuntimeError("member 3 diverged"))
    assert "member 3 diverged" in capsys.readouterr().out


def test_edge_loss_weight_is_the_mean_over_the_weighted_edges(graphs):
    """The vmap strategy's padded batches use the one loss with the padding mask as ``weight``: the mean over the
    edges of weight 1, the loss of those edges alone (and 0, not NaN, when every weight is 0)."""
    from tracker.train.step import edge_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=g)
    y = (torch.rand(50, generator=g) > 0.7).float()
    mask = torch.rand(50, generator=g) > 0.3
    for pw in (None, 3.0, torch.tensor(3.0)):
        masked = edge_loss(logits, y, pw, weight=mask)
        assert torch.allclose(masked, edge_loss(logits[mask], y[mask], pw), rtol=1e-6, atol=0)
    assert edge_loss(logits, y, weight=torch.zeros(50)) == 0


def test_checkpoint_every_must_be_positive():
    with pytest.raises(ConfigError, match=r"train\.checkpoint_every.*got 0"):
        trial_from_dict({"model": {"name": "euclidnet"}, "train": {"checkpoint_every": 0}})


def test_fraction_subsets_are_seeded_nested_and_nonempty(graphs):
    a = select_fraction(graphs, 0.5, seed=3)
    assert len(a) == 5 and a == select_fraction(graphs, 0.5, seed=3)
    assert a != select_fraction(graphs, 0.5, seed=4)
    small = select_fraction(graphs, 0.2, seed=3)
    assert all(any(g is h for h in a) for g in small)  # nested: a smaller fraction keeps a subset
    assert len(select_fraction(graphs, 0.01, seed=0)) == 1
    assert select_fraction(graphs, 1.0, seed=0) == list(graphs)


def test_rotate_batch_matches_data_rotation(graphs):
    batch = Batch.from_data_list(graphs[:2])
    out = rotate_batch(batch, torch.tensor([0.4, -2.0], dtype=torch.float64))
    ref = [rotate(graphs[0], 0.4), rotate(graphs[1], -2.0)]
    assert torch.equal(out.pos, torch.cat([r.pos for r in ref]))
    assert torch.equal(out.x, torch.cat([r.x for r in ref]))
    assert torch.equal(out.edge_attr, batch.edge_attr)
    assert torch.equal(batch.pos, Batch.from_data_list(graphs[:2]).pos)  # input untouched


def test_epoch_plan_and_pos_weight(graphs):
    g = torch.Generator().manual_seed(0)
    order, theta = epoch_plan(5, g, base_theta=0.5)
    assert sorted(order.tolist()) == list(range(5)) and torch.all(theta == 0.5)
    _, theta2 = epoch_plan(5, g, base_theta=0.5, random_rotation=True)
    assert torch.all((theta2 >= 0.5 - math.pi) & (theta2 < 0.5 + math.pi)) and theta2.unique().numel() == 5
    y = torch.cat([h.y for h in graphs[:2]])
    assert auto_pos_weight(graphs[:2]) == pytest.approx(float((y == 0).sum() / (y == 1).sum()))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_request_falls_back_to_cpu():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        assert resolve_device("cuda").type == "cpu"
    assert resolve_device("auto").type == "cpu"


def test_loss_fn_is_functional_in_params_and_rotation(graphs):
    """The step core works through torch.func with explicit parameters and per-graph angles (issue 8)."""
    from tracker.models import build_model
    from tracker.train.step import loss_fn

    torch.manual_seed(0)
    model = build_model("interaction_network", hidden=4)
    batch = Batch.from_data_list(graphs[:2])
    params = {k: v.detach() for k, v in model.named_parameters()}
    theta = torch.tensor([0.3, 1.0], dtype=torch.float64)
    direct, _ = loss_fn(model, None, batch, theta)
    functional, _ = loss_fn(model, params, batch, theta)
    assert torch.allclose(direct, functional)
    # gradients with respect to explicitly passed parameters (torch.func.grad/vmap additionally need every
    # custom autograd.Function of the model to support functorch: a model-zoo property, not the step's)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(loss_fn(model, leaves, batch, theta)[0], list(leaves.values()))
    assert len(grads) == len(params) and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # the angle is applied: the logits are those of the rotated batch, and differ from the unrotated ones
    rotated_logits = loss_fn(model, params, batch, theta)[1]
    assert torch.equal(rotated_logits, model(rotate_batch(batch, theta)))
    assert not torch.equal(rotated_logits, loss_fn(model, params, batch, None)[1])


@pytest.mark.parametrize("name", ["interaction_network", "euclidnet"])
def test_final_equivariance_equals_equivariance_deviation(graphs, name):
    """final_metrics derives equivariance_dev_* from its rotated test predictions (no second rotated pass): the
    values equal tracker.metrics.equivariance.equivariance_deviation on the same real graph."""
    from tracker.metrics.equivariance import equivariance_deviation, relative_deviation
    from tracker.models import build_model
    from tracker.train.config import EvalConfig
    from tracker.train.data import GraphSet
    from tracker.train.evaluate import final_metrics

    torch.manual_seed(0)
    model = build_model(name, hidden=4, iterations=2)
    test = GraphSet(graphs[9:10], device=torch.device("cpu"))
    degrees = [0.0, 45.0, 90.0]
    cfg = EvalConfig(rotations_deg=degrees, track_metrics=False, timing=False)
    m, _, rotation = final_metrics(model, val=test, test=test, cfg=cfg, val_theta=None, pos_weight=None, n_params=1)
    want = equivariance_deviation(model, graphs[9:10], [math.radians(d) for d in degrees])
    assert m["equivariance_dev_000"] == 0.0
    # the same up to float round-off (the two rotate the inputs with different float64 code)
    tol = {"rel": 1e-4, "abs": 0.0} if name == "interaction_network" else {"rel": 0.0, "abs": 1e-6}
    for d in degrees:
        got = m[f"equivariance_dev_{round(d):03d}"]
        assert got == pytest.approx(want[math.radians(d)], **tol), d
    assert list(rotation["equivariance_dev"]) == [m[f"equivariance_dev_{round(d):03d}"] for d in degrees]
    if name == "interaction_network":  # not invariant: a deviation far above round-off (~1e-8)
        assert m["equivariance_dev_090"] > 1e-6
    else:
        assert m["equivariance_dev_090"] < 1e-5
    ref, rot = torch.tensor([0.5, -1.0]), torch.tensor([0.25, -1.0])
    assert relative_deviation([ref, ref], [rot, ref]) == pytest.approx(0.25 / 3.0)


def test_final_rotation_aucs_equal_sklearn_per_angle(graphs):
    """final_metrics takes the AUC at every non-zero test angle from one exact rank-AUC call; each equals
    scikit-learn's roc_auc_score on that angle's probabilities (a real graph, the IN: not invariant, so the
    angles differ), and the angle-0 row is the test ``auc``."""
    from sklearn.metrics import roc_auc_score

    from tracker.models import build_model
    from tracker.train.config import EvalConfig
    from tracker.train.data import GraphSet
    from tracker.train.evaluate import final_metrics, final_predictions

    torch.manual_seed(0)
    model = build_model("interaction_network", hidden=4, iterations=2)
    test = GraphSet(graphs[9:10], device=torch.device("cpu"))
    degrees = [0.0, 30.0, 90.0, 180.0]
    cfg = EvalConfig(rotations_deg=degrees, track_metrics=False, timing=False, equivariance=False)
    m, _, rotation = final_metrics(model, val=test, test=test, cfg=cfg, val_theta=None, pos_weight=None, n_params=1)
    preds = final_predictions(model, val=test, test=test, cfg=cfg, val_theta=None, pos_weight=None)
    assert m["auc_rot_000"] == m["auc"] == roc_auc_score(preds.test.y > 0.5, preds.test.scores)
    for d in degrees[1:]:
        want = roc_auc_score(preds.rotated[d].y > 0.5, preds.rotated[d].scores)
        assert m[f"auc_rot_{round(d):03d}"] == pytest.approx(want, rel=0, abs=1e-12), d
    assert len({m[f"auc_rot_{round(d):03d}"] for d in degrees}) == len(degrees)  # the angles really differ
    assert list(rotation.auc) == [m[f"auc_rot_{round(d):03d}"] for d in degrees]
    assert m["auc_rot_spread"] == max(rotation.auc) - min(rotation.auc)
