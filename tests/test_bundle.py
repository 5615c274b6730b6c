"""Bundled trials (tracker.train.bundle): a member of a bundle equals the same cell trained alone, with both
strategies and with the batched final evaluation; failures and resumes are per member; bad bundles are refused
with errors naming the key.

Runs on the real npz hit graphs (2 train / 1 val / 1 test), small models, 2 epochs, on CPU.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from devices import DEVICES

import tracker.train.bundle as bundle
import tracker.train.evaluate as evaluate
import tracker.train.final as final
from equitrack.reporter import NullReporter
from tracker.data.hitgraphs import load_npz
from tracker.train import run_trial
from tracker.train.bundle import BundleError, run_bundle, validate_bundle, vmap_supported
from tracker.train.config import trial_from_dict
from tracker.train.trial import TIMING_METRICS

ARTIFACTS = ("config.yaml", "history.csv", "roc.csv", "rotation.csv", "model.pt", "metrics.json")
MODELS = {
    "euclidnet": {"name": "euclidnet", "hidden": 4, "mlp_depth": 2, "iterations": 2},
    "interaction_network": {"name": "interaction_network", "hidden": 8},
}
#: members differ in seed, training angle, lr, fraction, random rotation, grad clipping, pos weight, Adam betas
#: and weight decay
MEMBERS = [
    {"seed": 0, "pos_weight": "auto"},
    {"seed": 1, "train_rotation_deg": 45.0, "lr": 0.01, "grad_clip": 0.5},
    {"seed": 2, "fraction": 0.5, "random_rotation": True, "betas": [0.8, 0.99], "weight_decay": 0.01},
]


@pytest.fixture(scope="module")
def splits(real_npz_graphs: list[Path]):
    graphs = [load_npz(p) for p in real_npz_graphs[:2] + real_npz_graphs[8:10]]
    return graphs[:2], graphs[2:3], graphs[3:4]


def _config(model: str, rotations: tuple[float, ...] = (0, 90), **train):
    return trial_from_dict({
        "model": dict(MODELS[model]),
        "train": {"epochs": 2, "lr": 0.005, "device": "cpu", **train},
        "eval": {"rotations_deg": list(rotations), "timing": False},
    })


class Recorder(NullReporter):
    """Remembers the member's life; can raise after an epoch to simulate a crashed worker."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.started = False
        self.epochs: list[int] = []
        self.checkpointed: list[int] = []  # epochs reported with a checkpoint
        self.artifacts: list[str] = []
        self.final: dict[str, float] | None = None
        self.error: BaseException | None = None
        self.crash_after = crash_after

    def start(self, *, config, n_params):
        self.started = True

    def epoch(self, *, epoch, metrics, checkpoint_dir):
        assert set(metrics) == {"train_loss", "val_loss", "val_auc", "lr", "epoch_seconds"}
        if checkpoint_dir is not None:
            assert torch.load(checkpoint_dir / "state.pt", weights_only=True)["epoch"] == epoch  # just written
            self.checkpointed.append(epoch)
        self.epochs.append(epoch)
        if self.crash_after is not None and epoch >= self.crash_after:
            raise KeyboardInterrupt(f"simulated crash after epoch {epoch}")

    def artifact(self, path):
        self.artifacts.append(Path(path).name)

    def finish(self, *, metrics):
        self.final = dict(metrics)

    def fail(self, *, error):
        self.error = error


_SOLO: dict[tuple, object] = {}


def _solo(model: str, i: int, splits, tmp_root: Path, rotations: tuple[float, ...] = (0, 90), **override):
    """The cell ``MEMBERS[i]`` (with ``override``) trained alone with run_trial (cached per module run)."""
    key = (model, i, rotations, tuple(sorted(override.items())))
    if key not in _SOLO:
        _SOLO[key] = run_trial(_config(model, rotations, **{**MEMBERS[i], **override}), NullReporter(),
                               workdir=tmp_root / f"solo-{model}-{i}-{len(_SOLO)}", splits=splits)
    return _SOLO[key]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bundle")


def _assert_same(solo, member, *, tol_auc=1e-4):
    assert member.status == "FINISHED", member.error
    assert abs(solo.metrics["auc"] - member.metrics["auc"]) <= tol_auc
    assert set(solo.metrics) == set(member.metrics)
    for k, v in solo.metrics.items():
        if k in TIMING_METRICS:
            continue
        assert member.metrics[k] == pytest.approx(v, rel=1e-3, abs=1e-4), k
    assert len(solo.history) == len(member.history)
    for a, b in zip(solo.history, member.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)  # vmap: batched validation
        assert b["val_auc"] == pytest.approx(a["val_auc"], abs=tol_auc)  # vmap: batched epoch AUC
        assert b["lr"] == a["lr"]
    for name in ARTIFACTS:
        assert (member.artifacts_dir / name).is_file(), name


def _run(model, strategy, splits, root, reporters=None, members=None, rotations=None, **kw):
    members = MEMBERS if members is None else members
    rotations = rotations or [(0, 90)] * len(members)
    configs = [_config(model, r, **m) for m, r in zip(members, rotations)]
    reporters = reporters or [Recorder() for _ in configs]
    results = run_bundle(configs, reporters, workdirs=[root / f"m{i}" for i in range(len(configs))],
                         strategy=strategy, splits=splits, **kw)
    return results, reporters


def test_loop_members_equal_solo(splits, tmp_root, tmp_path):
    log: list[str] = []
    results, reps = _run("euclidnet", "auto", splits, tmp_path, log=log.append)
    assert "strategy loop" in log[0] and "final evaluation per member" in log[0]  # auto on CPU
    for i, (res, rep) in enumerate(zip(results, reps)):
        solo = _solo("euclidnet", i, splits, tmp_root)
        assert res.final_eval == "per_member"
        # the loop strategy runs run_trial's own step: bit-identical
        assert res.metrics["auc"] == solo.metrics["auc"]
        _assert_same(solo, res)
        assert rep.started and rep.epochs == rep.checkpointed == [1, 2] and rep.final == res.metrics
        assert set(ARTIFACTS) <= set(rep.artifacts)


def test_loop_member_artifacts_equal_solo(splits, tmp_root, tmp_path):
    """A loop member writes the tables and weights of the same cell trained alone, to the byte (history.csv
    without its timing column): one trainer for both."""
    results, _ = _run("euclidnet", "loop", splits, tmp_path, members=MEMBERS[:2])
    for i, res in enumerate(results):
        solo = _solo("euclidnet", i, splits, tmp_root)
        for name in ("roc.csv", "rotation.csv"):
            assert (res.artifacts_dir / name).read_bytes() == (solo.artifacts_dir / name).read_bytes(), name
        a, b = (pd.read_csv(r.artifacts_dir / "history.csv", dtype=str).drop(columns="epoch_seconds")
                for r in (solo, res))
        assert a.equals(b)
        ours, theirs = (torch.load(r.artifacts_dir / "model.pt", weights_only=True) for r in (res, solo))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_vmap_members_equal_solo_interaction_network(splits, tmp_root, tmp_path):
    model = MODELS["interaction_network"]
    probe = _config("interaction_network")
    from tracker.models import build_model

    assert vmap_supported(build_model(model["name"], **probe.model.hparams()), splits[0][0])[0]
    results, reps = _run("interaction_network", "vmap", splits, tmp_path, members=MEMBERS[1:])
    for i, res in enumerate(results, start=1):
        _assert_same(_solo("interaction_network", i, splits, tmp_root), res)
        assert res.final_eval == "batched"  # vmap: final metrics from the stacked forwards
        assert reps[i - 1].epochs == [1, 2]


@pytest.mark.parametrize("model", ["interaction_network", "euclidnet"])
def test_stacked_loss_is_the_step_loss_of_each_member(splits, model):
    """The vmap strategy's loss of a padded, stacked step is, per member, tracker.train.step.loss_fn of that member
    on its own unpadded, rotated graph (with its pos_weight): one loss for every path, padding weighing nothing."""
    from torch_geometric.data import Batch

    from tracker.models import build_model
    from tracker.train.step import loss_fn
    from tracker.train.strategies.stacked import StackedLoss
    from tracker.train.strategies.vmap import PaddedPool

    hp = _config(model).model.hparams()
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(MODELS[model]["name"], **hp))
    graphs = list(splits[0])
    padded = PaddedPool(graphs, device=torch.device("cpu"))
    ids = torch.tensor([[0], [1], [1]])
    theta = torch.tensor([[0.0], [0.7], [2.0]], dtype=torch.float64)
    pos_weight = torch.tensor([1.0, 3.0, 0.5])
    params, buffers = torch.func.stack_module_state(models)
    losses = StackedLoss(models[0]).losses(params, buffers, padded.gather(ids, theta), pos_weight)
    for k, m in enumerate(models):
        batch = Batch.from_data_list([graphs[int(ids[k, 0])]])
        own, _ = loss_fn(m, None, batch, theta[k], pos_weight=float(pos_weight[k]))
        assert losses[k].item() == pytest.approx(own.item(), rel=1e-5), k


@pytest.mark.parametrize("name", ["euclidnet", "euclidnet_noneq", "hybrid", "egnn", "interaction_network"])
def test_zoo_is_vmap_supported(splits, name):
    """Every model of the zoo can be batched by torch.func.vmap (forward and backward)."""
    from tracker.models import build_model

    torch.manual_seed(0)
    ok, why = vmap_supported(build_model(name, hidden=4, iterations=1), splits[0][0])
    assert ok, why


def test_vmap_members_equal_solo_euclidnet(splits, tmp_root, tmp_path):
    """EuclidNet (the default plain path; tests/test_model_paths.py checks that vmap batches the fused one too):
    vmap members equal the same cells trained alone."""
    from tracker.models import build_model

    model = build_model("euclidnet", **_config("euclidnet").model.hparams())
    assert vmap_supported(model, splits[0][0])[0]
    results, reps = _run("euclidnet", "vmap", splits, tmp_path, members=MEMBERS[1:])
    for i, res in enumerate(results, start=1):
        _assert_same(_solo("euclidnet", i, splits, tmp_root), res)
        assert res.final_eval == "batched"
        assert reps[i - 1].epochs == [1, 2]


@pytest.mark.parametrize("device", DEVICES)
def test_predict_stacked_caches_each_members_epoch_auc(splits, device):
    """The epoch AUCs that predict_stacked computes for all members in one batched call (on the split's device) are,
    per member, what SplitPrediction.epoch_auc gives from that member's own logits on the CPU (exactly), the rank
    AUC of the logits (sklearn), and close to the member's own predict()."""
    from sklearn.metrics import roc_auc_score

    from tracker.models import build_model
    from tracker.train.data import GraphSet

    hp = _config("euclidnet").model.hparams()
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model("euclidnet", **hp).to(device))
    val = GraphSet([*splits[1], *splits[2]], device=torch.device(device))  # two graphs: two batches
    thetas = [None, 0.5, None]
    preds = bundle.predict_stacked(models, val, thetas, pos_weights=[None, 2.0, None])
    aucs = [p.epoch_auc() for p in preds]
    assert len(set(aucs)) == 3  # distinct models: a mix-up of members would show
    for model, theta, p, auc in zip(models, thetas, preds, aucs):
        assert p.epoch_auc_value == auc
        assert [lg.shape[0] for lg in p.logits] == [g.edge_index.shape[1] for g in val.graphs]
        assert all(lg.dtype == torch.float64 for lg in p.logits + p.labels)
        fresh = evaluate.SplitPrediction(p.logits, p.labels, p.loss)  # no cache: computed from the logits
        assert fresh.epoch_auc() == auc
        assert auc == pytest.approx(roc_auc_score(torch.cat(p.labels).numpy(), torch.cat(p.logits).numpy()),
                                    abs=1e-12)
        own = evaluate.predict(model, val, theta)
        assert own.epoch_auc() == pytest.approx(auc, abs=1e-6)
        assert p.auc() == pytest.approx(own.auc(), abs=1e-6)  # the final metrics' sklearn AUC, unchanged


@pytest.mark.parametrize(("strategy", "final_eval"), [("vmap", "auto"), ("loop", "batched")])
def test_batched_final_eval_equals_solo(splits, tmp_root, tmp_path, monkeypatch, strategy, final_eval):
    """Members listing different test angles: their final metrics come from the bundle's stacked forwards
    (final_metrics makes no forward of its own) and equal the same cells trained and evaluated alone. With lr 0.05
    member 1's best epoch is its first: the stacked forwards must use the best weights, not the last."""
    rotations = [(0, 90), (0, 45, 90, 180)]
    members = [{**MEMBERS[1], "lr": 0.05}, MEMBERS[2]]
    solos = [_solo("interaction_network", 1, splits, tmp_root, rotations[0], lr=0.05),
             _solo("interaction_network", 2, splits, tmp_root, rotations[1])]
    assert solos[0].metrics["best_epoch"] == 1.0
    own_forwards: list[float | None] = []
    real_predict = evaluate.predict

    def counting_predict(model, split, theta=None, **kw):
        own_forwards.append(theta)
        return real_predict(model, split, theta, **kw)

    monkeypatch.setattr(evaluate, "predict", counting_predict)  # the per-member path of final_metrics
    log: list[str] = []
    results, reps = _run("interaction_network", strategy, splits, tmp_path, members=members, rotations=rotations,
                         log=log.append, final_eval=final_eval)
    assert f"strategy {strategy}" in log[0] and "final evaluation batched" in log[0]
    assert any("batched final evaluation of 2 members" in line for line in log)
    assert own_forwards == []
    for solo, res, rep, r in zip(solos, results, reps, rotations):
        _assert_same(solo, res)
        assert res.final_eval == "batched" and rep.final == res.metrics
        assert {f"auc_rot_{round(d):03d}" for d in r} <= set(res.metrics)
    assert "auc_rot_045" not in results[0].metrics


def test_batched_final_eval_falls_back_per_member(splits, tmp_root, tmp_path, monkeypatch):
    """If the stacked final forwards raise, every member is evaluated alone (and still equals its solo run)."""
    def broken(*args, **kwargs):
        raise RuntimeError("stacked forward failed")

    monkeypatch.setattr(final, "final_predictions_stacked", broken)  # the batched final evaluation's forwards
    log: list[str] = []
    results, _ = _run("interaction_network", "vmap", splits, tmp_path, members=MEMBERS[1:], log=log.append)
    assert any("stacked forward failed" in line and "member by member" in line for line in log)
    for i, res in enumerate(results, start=1):
        _assert_same(_solo("interaction_network", i, splits, tmp_root), res)
        assert res.final_eval == "per_member"


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_failing_member_does_not_stop_the_others(splits, tmp_root, tmp_path, strategy):
    members = [MEMBERS[0], {"seed": 5, "lr": 1e10}, MEMBERS[2]]
    results, reps = _run("interaction_network", strategy, splits, tmp_path, members=members)
    assert results[1].status == "FAILED"
    assert "non-finite" in results[1].error and results[1].metrics == {}
    assert reps[1].error is not None and reps[1].final is None
    assert (tmp_path / "m1" / "error.txt").is_file()
    for i in (0, 2):
        _assert_same(_solo("interaction_network", i, splits, tmp_root), results[i])
        assert reps[i].final is not None
        # vmap: the finished members' final evaluation is batched without the failed one
        assert results[i].final_eval == ("batched" if strategy == "vmap" else "per_member")


def test_resume_is_per_member(splits, tmp_root, tmp_path):
    """A crash (a reporter raising) after member 1's first epoch, under vmap; the re-run (loop strategy, reading the
    same run_trial-format checkpoints) finishes every member with the uninterrupted metrics."""
    reps = [Recorder(), Recorder(crash_after=1), Recorder()]
    with pytest.raises(KeyboardInterrupt):
        _run("interaction_network", "vmap", splits, tmp_path, reporters=reps)
    reps2 = [Recorder() for _ in MEMBERS]
    results, _ = _run("interaction_network", "loop", splits, tmp_path, reporters=reps2)
    assert reps2[1].epochs == [2]  # member 1 resumed after its checkpointed epoch 1
    for i, res in enumerate(results):
        _assert_same(_solo("interaction_network", i, splits, tmp_root), res)
    # a finished bundle re-run trains nothing and gives the same metrics
    reps3 = [Recorder() for _ in MEMBERS]
    again, _ = _run("interaction_network", "loop", splits, tmp_path, reporters=reps3)
    assert all(r.epochs == [] for r in reps3)
    assert [a.metrics["auc"] for a in again] == [r.metrics["auc"] for r in results]


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_bundles_honour_checkpoint_every(splits, tmp_path, strategy):
    """Members with ``checkpoint_every`` 3 and 2 (it may differ within a bundle) over 5 epochs checkpoint epochs
    3, 5 and 2, 4, 5 with the metrics of ``checkpoint_every: 1``; a crash after epoch 4 resumes each member from its
    last checkpoint (3 and 4) and ends with the uninterrupted metrics (vmap: its Adam state, written back only
    for checkpoints, is the one a checkpoint every epoch holds)."""
    def run(root, every, reporters=None):
        members = [{"seed": 0, "epochs": 5, "checkpoint_every": every[0]},
                   {"seed": 1, "epochs": 5, "lr": 0.01, "checkpoint_every": every[1], "weight_decay": 0.01}]
        return _run("interaction_network", strategy, splits, root, members=members, reporters=reporters)

    every1, _ = run(tmp_path / "every1", (1, 1))
    results, reps = run(tmp_path / "every", (3, 2))
    assert [r.epochs for r in reps] == [[1, 2, 3, 4, 5]] * 2
    assert [r.checkpointed for r in reps] == [[3, 5], [2, 4, 5]]
    def same(a, b):  # bit-identical results, timings aside
        assert b.status == "FINISHED", b.error
        assert {k: v for k, v in a.metrics.items() if k not in TIMING_METRICS} == \
               {k: v for k, v in b.metrics.items() if k not in TIMING_METRICS}
        assert [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in a.history] == \
               [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in b.history]

    for a, b in zip(every1, results):
        same(a, b)

    reps = [Recorder(), Recorder(crash_after=4)]
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", (3, 2), reporters=reps)
    reps = [Recorder(), Recorder()]
    resumed, _ = run(tmp_path / "crash", (3, 2), reporters=reps)
    assert [r.epochs for r in reps] == [[4, 5], [5]]
    for a, b in zip(every1, resumed):
        same(a, b)


def test_bad_bundles_are_refused(splits, tmp_path):
    base = _config("euclidnet", seed=0)

    def variant(**sections):
        raw = base.model_dump(mode="json")
        for sec, vals in sections.items():
            raw[sec] = {**raw[sec], **vals}
        return trial_from_dict(raw)

    with pytest.raises(BundleError, match=r"'data\.pt_min'"):
        validate_bundle([base, variant(data={"pt_min": 1.0}, train={"seed": 1})])
    with pytest.raises(BundleError, match=r"'model\.hidden'"):
        validate_bundle([base, variant(model={"hidden": 8}, train={"seed": 1})])
    with pytest.raises(BundleError, match=r"'train\.batch_size'"):
        validate_bundle([base, variant(train={"seed": 1, "batch_size": 2})])
    with pytest.raises(BundleError, match=r"'model\.c'.*vmap"):
        validate_bundle([base, variant(model={"c": 0.05})], strategy="vmap")
    assert "model.c" in validate_bundle([base, variant(model={"c": 0.05})])  # fine for the loop strategy
    with pytest.raises(BundleError, match="members 0 and 1 are the same"):
        validate_bundle([base, base])
    with pytest.raises(BundleError, match="at least one"):
        validate_bundle([])
    with pytest.raises(BundleError, match="2 configs but 1 reporters"):
        run_bundle([base, variant(train={"seed": 1})], [NullReporter()], workdirs=[tmp_path / "a", tmp_path / "b"],
                   splits=splits)
    with pytest.raises(BundleError, match="share a workdir"):
        run_bundle([base, variant(train={"seed": 1})], [NullReporter()] * 2, workdirs=[tmp_path, tmp_path],
                   splits=splits)
    with pytest.raises(BundleError, match="strategy must be"):
        run_bundle([base], [NullReporter()], workdirs=[tmp_path / "c"], strategy="fast", splits=splits)
    with pytest.raises(BundleError, match="final_eval must be"):
        run_bundle([base], [NullReporter()], workdirs=[tmp_path / "d"], final_eval="fast", splits=splits)
    with pytest.raises(BundleError, match=r"final_eval 'batched'.*'model\.c'"):
        run_bundle([base, variant(model={"c": 0.05})], [NullReporter()] * 2, final_eval="batched",
                   workdirs=[tmp_path / "e", tmp_path / "f"], splits=splits)
