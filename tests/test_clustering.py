"""The learned-clustering pipeline (task ``clustering``): stage shapes and exact sizes, losses and track metrics
on hand-computed cases, the radius graph against scikit-learn, SO(2) equivariance of every stage, DBSCAN track
building, and a tiny end-to-end trial on simulated events through the dataset cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors
from torch_geometric.data import Data

from equitrack.config import ConfigError
from equitrack.task import get_task
from tracker.clustering.config import trial_from_dict
from tracker.clustering.graphs import gc_counts, gc_metrics, radius_graph, same_particle_pairs
from tracker.clustering.models import (
    PRESET_COUNTS,
    REGISTRY,
    STAGES,
    StageConfigError,
    build_stage,
    count_parameters,
    resolve_stage,
)
from tracker.clustering.models.common import rotate_coordinates
from tracker.clustering.models.metric_learning import hinge_losses
from tracker.clustering.models.object_condensation import condensation_losses
from tracker.clustering.tracks import dbscan_labels, event_counts, particle_table, scan_dbscan, track_metrics
from tracker.data.transforms import rotate
from tracker.graphs.builder import build_event

torch.set_num_threads(1)
ANGLES = [
    float(a) for a in torch.empty(3).uniform_(-math.pi, math.pi, generator=torch.Generator().manual_seed(3))
]


@pytest.fixture(scope="module")
def event(shared_trackml: Path) -> Data:
    """The shipped real event (pT > 1 GeV, noise hits kept), in float64."""
    g = build_event(shared_trackml / "event000000001", pt_min=1.0, noise_hits=True)
    g.x, g.pos = g.x.double(), g.pos.double()
    return g


def _forward(stage: str, model: torch.nn.Module, g: Data):
    if stage in ("edge_classifier", "object_condensation"):
        return model(g, g.edge_index)
    return model(g)


# ------------------------------------------------------------------------------------------------ stages


@pytest.mark.parametrize("stage", STAGES)
def test_stage_output_shapes(stage: str, event: Data) -> None:
    for eq in (False, True):
        model = build_stage(stage, preset="tiny", equivariant=eq).double()
        out = _forward(stage, model, event)
        n, e = event.num_nodes, event.num_edges
        if stage == "metric_learning":
            assert out.shape == (n, resolve_stage(stage, preset="tiny")["emb_dim"])
        elif stage == "noise_classifier":
            assert out.shape == (n,)
        elif stage == "edge_classifier":
            assert out.shape == (e,)
        else:
            coords, beta = out
            assert coords.shape == (n, resolve_stage(stage, preset="tiny")["oc_dim"]) and beta.shape == (n,)
            assert bool(((beta > 0) & (beta < 1)).all())


def test_preset_counts_are_exact() -> None:
    for (stage, preset, eq), count in PRESET_COUNTS.items():
        hp = resolve_stage(stage, preset=preset, equivariant=eq)
        assert count_parameters(build_stage(stage, preset=preset, equivariant=eq)) == count, (
            stage,
            preset,
            eq,
        )
        assert REGISTRY[stage].param_count(**hp) == count
    assert {(s, p) for s, p, _ in PRESET_COUNTS} == {(s, p) for s in STAGES for p in REGISTRY[s].presets}


def test_bad_stage_hyperparameters_are_named() -> None:
    with pytest.raises(
        StageConfigError, match=r"model.metric_learning: unknown hyperparameter\(s\) \['hiden'\]"
    ):
        resolve_stage("metric_learning", hiden=3)
    with pytest.raises(StageConfigError, match=r"model.edge_classifier.hidden=0: expected an integer >= 1"):
        resolve_stage("edge_classifier", hidden=0)
    with pytest.raises(StageConfigError, match="vectors"):
        resolve_stage("object_condensation", equivariant=True, oc_dim=2, vectors=2)
    with pytest.raises(ConfigError, match="model.metric_learning"):
        trial_from_dict({"model": {"metric_learning": {"depth": "deep"}}}, source="t.yaml")
    with pytest.raises(ConfigError, match=r"(?s)t.yaml.*pipeline.stages.*pipeline order"):
        trial_from_dict({"pipeline": {"stages": ["object_condensation", "metric_learning"]}}, source="t.yaml")
    with pytest.raises(ConfigError, match="pipeline.stages"):
        trial_from_dict({"pipeline": {"stages": ["kalman_filter"]}}, source="t.yaml")
    with pytest.raises(ConfigError, match="model.equivariant"):
        trial_from_dict({"model": {"name": "mixed"}}, source="t.yaml")
    mixed = trial_from_dict({"model": {"name": "mixed", "equivariant": ["edge_classifier"]}}).model
    assert [mixed.stage_hparams(s)["equivariant"] for s in STAGES] == [False, False, True, False]


# ------------------------------------------------------------------------------------------------ equivariance


def _max_dev(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("stage", STAGES)
def test_equivariant_stage_commutes_with_rotations(stage: str, event: Data) -> None:
    """Rotate the event by random angles: scalars (β, logits) stay, coordinates rotate (their 2-D vectors)."""
    torch.manual_seed(0)
    model = build_stage(stage, preset="tiny", equivariant=True).double().eval()
    with torch.no_grad():
        base = _forward(stage, model, event)
        for theta in ANGLES:
            out = _forward(stage, model, rotate(event, theta))
            if stage == "object_condensation":
                assert _max_dev(out[1], base[1]) < 1e-9
                assert _max_dev(out[0], rotate_coordinates(base[0], theta, model.vectors)) < 1e-9
            elif stage == "metric_learning":
                assert _max_dev(out, rotate_coordinates(base, theta, model.vectors)) < 1e-9
            else:
                assert _max_dev(out, base) < 1e-9


@pytest.mark.parametrize("stage", STAGES)
def test_plain_stage_is_not_equivariant(stage: str, event: Data) -> None:
    """The same check fails for the plain stages (they read φ and x, y): the test can fail."""
    torch.manual_seed(0)
    model = build_stage(stage, preset="tiny", equivariant=False).double().eval()
    with torch.no_grad():
        base = _forward(stage, model, event)
        out = _forward(stage, model, rotate(event, ANGLES[0]))
    dev = _max_dev(out[0], base[0]) if stage == "object_condensation" else _max_dev(out, base)
    assert dev > 1e-4


# ------------------------------------------------------------------------------------------------ graphs


def test_radius_graph_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 3))
    r = rng.uniform(size=300)
    edges = radius_graph(
        torch.from_numpy(emb), max_radius=0.5, max_neighbours=300, r=torch.from_numpy(r)
    ).numpy()
    ref = NearestNeighbors(radius=0.5).fit(emb).radius_neighbors(emb, return_distance=False)
    expected = {(min(i, j), max(i, j)) for i, nb in enumerate(ref) for j in nb if i != j}
    got = {(min(a, b), max(a, b)) for a, b in edges.T}
    assert got == expected and len(got) == edges.shape[1]  # one edge per pair
    assert bool((r[edges[0]] <= r[edges[1]]).all())  # inner -> outer


def test_radius_graph_backends_agree() -> None:
    """The cdist blocks (torch) and the tree search (sklearn, used on CPU above SKLEARN_ABOVE hits) give one graph."""
    emb = torch.from_numpy(np.random.default_rng(2).normal(size=(500, 4)))
    r = torch.from_numpy(np.random.default_rng(3).uniform(size=500))
    a = radius_graph(emb, max_radius=0.8, max_neighbours=5, r=r, backend="torch")
    b = radius_graph(emb, max_radius=0.8, max_neighbours=5, r=r, backend="sklearn")
    assert a.shape[1] > 500 and torch.equal(a, b)
    with pytest.raises(ValueError, match="backend"):
        radius_graph(emb, max_radius=0.8, max_neighbours=5, backend="faiss")


def test_radius_graph_caps_neighbours_and_radius() -> None:
    emb = torch.tensor([[0.0], [0.1], [0.3], [0.6], [5.0]])
    edges = radius_graph(emb, max_radius=0.35, max_neighbours=1)
    # each hit keeps its single nearest neighbour within 0.35: 0-1, 1-0, 2-1, 3-2; hit 4 has none
    assert sorted(map(tuple, edges.T.tolist())) == [(0, 1), (1, 2), (2, 3)]
    assert radius_graph(emb, max_radius=0.05, max_neighbours=4).shape == (2, 0)


def test_same_particle_pairs_and_gc_metrics_by_hand() -> None:
    pid = torch.tensor([1, 1, 1, 2, 2, 0])
    pt = torch.tensor([2.0, 2.0, 2.0, 0.5, 0.5, float("nan")])
    assert sorted(map(tuple, same_particle_pairs(pid).T.tolist())) == [(0, 1), (0, 2), (1, 2), (3, 4)]
    edges = torch.tensor([[0, 1, 3, 2], [1, 2, 4, 5]])
    c = gc_counts(edges, pid, pt)
    # true pairs above 0.9 GeV: (0,1), (0,2), (1,2); found (0,1), (1,2); edges touching a high-pT hit: 0-1, 1-2,
    # 2-5, of which true: 0-1, 1-2
    assert c == {"true_pairs": 3, "found": 2, "edges_pt": 3, "true_edges_pt": 2, "edges": 4, "hits": 6}
    m = gc_metrics([c, c])
    assert m["gc_efficiency"] == pytest.approx(2 / 3) and m["gc_purity"] == pytest.approx(2 / 3)
    assert m["gc_edges_per_hit"] == pytest.approx(4 / 6)
    # unknown pT (the reference npz graphs, already cut at 1.5 GeV): every particle counts
    unknown = gc_counts(edges, pid, torch.full((6,), float("nan")))
    assert unknown["true_pairs"] == 4 and unknown["found"] == 3


# ------------------------------------------------------------------------------------------------ losses


def test_hinge_losses_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.6, 0.0], [0.6, 0.4]], requires_grad=True)
    pid = torch.tensor([1, 1, 1, 2])
    pt = torch.tensor([2.0, 2.0, 2.0, 2.0])
    parts = hinge_losses(emb, pid, pt, r_emb=1.0, pt_min=0.9)
    # attractive pairs (0,1), (0,2), (1,2): d² = 0.09, 0.36, 0.09
    assert float(parts["attractive"].detach()) == pytest.approx((0.09 + 0.36 + 0.09) / 3)
    # repulsive pairs in the radius-1 graph: (0,3), (1,3), (2,3) with d² = 0.52, 0.25, 0.16
    assert float(parts["repulsive"].detach()) == pytest.approx(((1 - 0.52) + (1 - 0.25) + (1 - 0.16)) / 3)
    (parts["attractive"] + parts["repulsive"]).backward()
    assert emb.grad is not None and bool(torch.isfinite(emb.grad).all())
    # particle 2 has one hit (< 3): no attraction; below pt_min: none either
    assert float(hinge_losses(emb, pid, torch.full((4,), 0.5), pt_min=0.9)["attractive"]) == 0.0


def test_condensation_losses_by_hand() -> None:
    coords = torch.tensor([[0.0], [0.5], [0.2]])
    beta = torch.tensor([0.5, 0.9, 0.2])
    pid = torch.tensor([1, 1, 0])
    parts = condensation_losses(coords, beta, pid, q_min=0.01)
    q = [math.atanh(b) ** 2 + 0.01 for b in (0.5, 0.9, 0.2)]
    # the condensation point of particle 1 is hit 1 (largest β)
    assert float(parts["attractive"]) == pytest.approx(q[0] * q[1] * 0.5**2 / 3)
    assert float(parts["repulsive"]) == pytest.approx(q[2] * q[1] * (1 - 0.3) / 3)
    assert float(parts["coward"]) == pytest.approx(1 - 0.9)
    assert float(parts["background"]) == pytest.approx(0.2)


# ------------------------------------------------------------------------------------------------ tracks


def test_dbscan_track_building() -> None:
    coords = np.array([[0.0, 0], [0.01, 0], [0.02, 0], [1.0, 1], [1.01, 1], [5.0, 5], [0.005, 0]])
    keep = np.array([True, True, True, True, True, True, False])
    labels = dbscan_labels(coords, eps=0.05, min_samples=2, keep=keep)
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] and labels[0] != labels[3]
    # DBSCAN noise (hit 5) and a dropped hit (6) are singletons
    assert len(set(labels.tolist())) == 4 and labels[5] != labels[6]


def _hand_event() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pid = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])
    pt = np.array([2.0] * 4 + [0.5] * 3 + [1.5] * 3 + [np.nan])
    labels = np.array(
        [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 1]
    )  # A = p1, B = p2 + noise, C = two hits of p3, p3 alone
    return labels, pid, pt


def test_track_metrics_by_hand() -> None:
    labels, pid, pt = _hand_event()
    m = track_metrics([event_counts(labels, pid, pt, pt_min=0.9)])
    # particles above 0.9 GeV with >= 3 hits: p1, p3; p1 is found perfectly, p3's hits are split 2 + 1
    assert m["track_dm_eff"] == pytest.approx(1 / 2) and m["track_perfect_eff"] == pytest.approx(1 / 2)
    # tracks (>= 3 hits): A (p1, 4/4) and B (p2 3/4, below pT): both LHC; the only one above pT is A
    assert m["track_lhc_eff"] == pytest.approx(1.0) and m["track_fake_rate"] == pytest.approx(0.0)
    # TrackML: A scores 4 hits, B 3 (p2's; the noise hit weighs 0), C 2 (2/2 of C, 2/3 of p3); 10 real hits
    assert m["trackml_score"] == pytest.approx(9 / 10)
    # a second event: one 4-hit track of 3 particles and a noise hit: majority noise (tie, smallest pid): a fake
    second = event_counts(np.zeros(4, int), np.array([1, 2, 3, 0]), np.full(4, 2.0), pt_min=0.9)
    m2 = track_metrics([event_counts(labels, pid, pt, pt_min=0.9), second])
    assert m2["track_fake_rate"] == pytest.approx(1 / 3) and m2["trackml_score"] == pytest.approx(0.9 / 2)
    assert m2["track_dm_eff"] == pytest.approx(1 / 2)
    # a lower pt_min counts p2 as well (found: DM and perfect)
    m3 = track_metrics([event_counts(labels, pid, pt, pt_min=0.1)])
    assert m3["track_dm_eff"] == pytest.approx(2 / 3) and m3["track_perfect_eff"] == pytest.approx(1 / 3)


def test_particle_table_by_hand() -> None:
    """Per-particle matches of the hand event agree with the counts: p1 found (DM, perfect), p2 by DM, p3 not."""
    labels, pid, pt = _hand_event()
    eta = np.arange(11, dtype=float)
    t = particle_table(labels, pid, pt, eta).set_index("pid")
    assert list(t.index) == [1, 2, 3] and list(t["n_hits"]) == [4, 3, 3]
    assert list(t["dm"]) == [True, True, False] and list(t["perfect"]) == [
        True,
        False,
        False,
    ]  # B holds noise
    assert t.loc[1, "eta"] == pytest.approx(1.5) and t.loc[3, "pt"] == 1.5
    high = t[t["pt"] > 0.9]
    m = track_metrics([event_counts(labels, pid, pt, pt_min=0.9)])
    assert high["dm"].mean() == m["track_dm_eff"] and high["perfect"].mean() == m["track_perfect_eff"]


def test_dbscan_scan_picks_the_best_pair() -> None:
    rng = np.random.default_rng(1)
    pid = np.repeat(np.arange(1, 6), 4)
    coords = pid[:, None] * 1.0 + rng.normal(scale=0.02, size=(20, 2))  # particles 1.4 apart, spread 0.02
    ev = (coords, np.ones(20, bool), pid, np.full(20, 2.0))
    (eps, ms), best, rows = scan_dbscan(
        [ev], eps=[0.001, 0.2, 5.0], min_samples=[1, 2], metric="track_dm_eff", pt_min=0.9
    )
    assert eps == 0.2 and ms == 1 and best["track_perfect_eff"] == 1.0 and len(rows) == 6
    assert {r["eps"] for r in rows if r["track_dm_eff"] == 0.0} == {0.001, 5.0}


# ------------------------------------------------------------------------------------------------ trial


class Recorder:
    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.artifacts: list[str] = []
        self.final: dict | None = None

    def start(self, *, config, n_params) -> None:
        self.n_params = n_params

    def epoch(self, *, epoch, metrics, checkpoint_dir) -> None:
        self.epochs.append({"epoch": epoch, **metrics})

    def artifact(self, path) -> None:
        self.artifacts.append(Path(path).name)

    def finish(self, *, metrics) -> None:
        self.final = dict(metrics)

    def fail(self, *, error) -> None:
        raise error


TINY_DATA = {
    "source": "simulated",
    "events": {"train": 2, "val": 1, "test": 1},
    "pileup": 10,
    "pt_min": 1.0,
    "noise_hits": True,
}


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    task = get_task("clustering")
    cfg = task.config_type.model_validate(
        {
            "pipeline": {"stages": list(STAGES)},
            "data": TINY_DATA,
            "model": {"name": "so2", "preset": "tiny", "edge_classifier": {"equivariant": False}},
            "train": {"epochs": 2, "stage_epochs": {"object_condensation": 3}},
            "eval": {"rotations_deg": [0, 90], "eps": [0.1, 0.4], "min_samples": [1, 2]},
        }
    )
    task.check_model(cfg)
    task.prepare_data(cfg)
    rec = Recorder()
    result = task.run_trial(cfg, rec, workdir=tmp_path / "w")
    m = result.metrics
    assert rec.final == m and len(rec.epochs) == 2 + 2 + 2 + 3
    assert [e["stage"] for e in rec.epochs] == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert all(set(task.epoch_metrics) <= set(e) for e in rec.epochs)
    for key in (
        "track_dm_eff",
        "track_perfect_eff",
        "trackml_score",
        "gc_efficiency",
        "gc_purity",
        "ec_auc",
        "nc_auc",
        "oc_loss",
        "oc_attractive",
        "track_dm_eff_rot_090",
    ):
        assert key in m and math.isfinite(m[key]), key
    for key in ("track_dm_eff", "track_perfect_eff", "trackml_score", "gc_efficiency", "ec_auc"):
        assert 0.0 <= m[key] <= 1.0
    assert 0.0 <= m.get("track_lhc_eff", 0.0) <= 1.0  # left out (NaN) when no track has 3 hits
    assert m["dbscan_eps"] in (0.1, 0.4) and m["dbscan_min_samples"] in (1, 2)
    expected = sum(PRESET_COUNTS[(s, "tiny", s != "edge_classifier")] for s in STAGES)
    assert m["n_params"] == expected == rec.n_params
    assert {
        "config.yaml",
        "history.csv",
        "dbscan_scan.csv",
        "rotation.csv",
        "particles.csv",
        "model.pt",
        "metrics.json",
    } <= set(rec.artifacts)
    particles = __import__("pandas").read_csv(tmp_path / "w" / "particles.csv")
    assert {"event", "pid", "pt", "eta", "n_hits", "dm", "perfect"} <= set(particles.columns) and len(
        particles
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "stages", [["metric_learning"], ["edge_classifier"], ["object_condensation"], ["noise_classifier"]]
)
def test_one_stage_alone(stages: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stage trains alone: metric learning and condensation build tracks with DBSCAN, the edge classifier
    with connected components of the geometric graph, the noise classifier none."""
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    task = get_task("clustering")
    cfg = task.config_type.model_validate(
        {
            "pipeline": {"stages": stages},
            "data": TINY_DATA,
            "model": {"preset": "tiny"},
            "train": {"epochs": 1},
        }
    )
    m = task.run_trial(cfg, Recorder(), workdir=tmp_path / "w").metrics
    assert ("track_dm_eff" in m) == (stages != ["noise_classifier"])
    assert ("dbscan_eps" in m) == (stages[0] in ("metric_learning", "object_condensation"))
    assert "gc_efficiency" in m


def test_noise_hits_are_nodes_with_false_edges(shared_trackml: Path, event: Data) -> None:
    """``noise_hits`` adds the noise hits as nodes (never a true edge) and leaves the particle hits' graph as is."""
    plain = build_event(shared_trackml / "event000000001", pt_min=1.0)
    noise = event.pid == 0
    assert int(noise.sum()) > 0 and not bool((plain.pid == 0).any())
    assert event.num_nodes == plain.num_nodes + int(noise.sum())
    touches = noise[event.edge_index[0]] | noise[event.edge_index[1]]
    assert bool(touches.any()) and float(event.y[touches].sum()) == 0.0
    assert float(event.y.sum()) == float(plain.y.sum())
    assert torch.equal(torch.sort(event.hit_id[~noise]).values, torch.sort(plain.hit_id).values)


class Crash(Recorder):
    """Stops the trial (as a killed worker would) after global epoch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def epoch(self, *, epoch, metrics, checkpoint_dir) -> None:
        super().epoch(epoch=epoch, metrics=metrics, checkpoint_dir=checkpoint_dir)
        if epoch == self.at:
            raise KeyboardInterrupt("crash")


TIMING = ("train_seconds",)


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial stopped inside its second stage and resumed from its checkpoint ends with the metrics (and per-epoch
    losses) of an uninterrupted run, also with checkpoints every 2nd epoch; another config refuses the checkpoint."""
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    from tracker.clustering.trial import CheckpointMismatchError, run_trial

    raw = {
        "data": {**TINY_DATA, "noise_hits": False},
        "model": {"name": "so2", "preset": "tiny"},
        "train": {"epochs": 3, "random_rotation": True},
        "eval": {"eps": [0.2, 0.4], "min_samples": [1], "rotations_deg": [0, 90, 200]},
    }
    cfg = trial_from_dict(raw)
    full = Recorder()
    ref = run_trial(cfg, full, workdir=tmp_path / "ref").metrics
    # every stage SO(2)-equivariant: the tracks of rotated test events are the same tracks
    assert ref["track_dm_eff_rot_spread"] == 0.0
    assert ref["trackml_score_rot_090"] == ref["trackml_score_rot_200"] == ref["trackml_score"]
    # (checkpoint_every, crash after global epoch, last checkpoint): every 2nd stage-local epoch and each stage's end
    for every, crash_at, resumed_from in ((1, 5, 5), (2, 4, 3)):
        c = trial_from_dict({**raw, "train": {**raw["train"], "checkpoint_every": every}})
        work = tmp_path / f"w{every}"
        with pytest.raises(KeyboardInterrupt):
            run_trial(c, Crash(crash_at), workdir=work)
        rec = Recorder()
        got = run_trial(c, rec, workdir=work).metrics
        assert {k: v for k, v in got.items() if k not in TIMING} == {
            k: v for k, v in ref.items() if k not in TIMING
        }
        assert [e["epoch"] for e in rec.epochs] == list(range(resumed_from + 1, 10))
        assert [e["val_loss"] for e in rec.epochs] == [e["val_loss"] for e in full.epochs[resumed_from:]]
    other = trial_from_dict({**raw, "train": {**raw["train"], "lr": 0.01}})
    with pytest.raises(CheckpointMismatchError, match="different trial configuration"):
        run_trial(other, Recorder(), workdir=tmp_path / "w1")
    assert run_trial(other, Recorder(), workdir=tmp_path / "w1", resume=False).metrics["n_params"] > 0
