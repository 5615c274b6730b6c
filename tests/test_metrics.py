"""Metric functions: hand-computed cases, agreement with scikit-learn, threshold choice, ant factor and the
track-level metrics on a constructed event."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from devices import DEVICES
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from tracker.metrics import (
    ant_factor,
    binary_metrics,
    choose_threshold,
    confusion,
    connected_tracks,
    efficiency_above_pt,
    match_event,
    roc_auc,
    roc_auc_and_table,
    roc_auc_rows,
    roc_table,
    track_metrics,
)


def test_roc_auc_hand_case_and_single_class():
    # pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_roc_auc_matches_sklearn_and_roc_table():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = rng.normal(size=500) + 1.5 * y
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    t = roc_table(y, s)
    assert list(t.columns) == ["fpr", "tpr", "threshold"]
    assert np.all(np.diff(t.fpr) >= 0) and np.all(np.diff(t.tpr) >= 0)
    assert np.trapezoid(t.tpr, t.fpr) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_and_table_is_both_calls_to_the_bit(ties: bool):
    # the final evaluation takes the test AUC and the ROC table from one roc_curve: the same numbers exactly
    rng = np.random.default_rng(1)
    y = rng.random(4000) < 0.3
    s = rng.normal(size=4000) + y
    if ties:  # float32 probabilities rounded hard: many tied scores, as a saturated sigmoid gives
        s = np.round(1 / (1 + np.exp(-s)), 2).astype(np.float32)
    auc, table = roc_auc_and_table(y, s)
    assert auc == roc_auc(y, s) == roc_auc_score(y, s)
    fpr, tpr, thr = roc_curve(y, s)
    assert np.array_equal(table.fpr, fpr) and np.array_equal(table.tpr, tpr) and np.array_equal(table.threshold, thr)
    nan_auc, empty = roc_auc_and_table([1, 1], [0.2, 0.3])
    assert math.isnan(nan_auc) and list(empty.columns) == ["fpr", "tpr", "threshold"] and empty.empty


def test_roc_auc_rows_hand_cases():
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0])
    scores = torch.tensor([
        [0.1, 0.2, 0.8, 0.9, 0.3],  # every positive above every negative: 1
        [0.8, 0.9, 0.1, 0.2, 0.3],  # every positive below every negative: 0
        [0.5, 0.5, 0.5, 0.5, 0.5],  # all tied: each pair counts one half
        # negatives {0.2, 0.5, 0.5}, positives {0.5, 0.9}: positive 0.5 is above 1 negative and tied with 2
        # (1 + 2/2 = 2), positive 0.9 is above all 3 -> (2 + 3) / (2 * 3) = 5/6
        [0.2, 0.5, 0.5, 0.9, 0.5],
    ])
    auc = roc_auc_rows(y, scores)
    assert auc.dtype == torch.float64 and auc.shape == (4,)
    assert auc.tolist() == [1.0, 0.0, 0.5, 5 / 6]
    assert roc_auc_score(y.numpy(), scores[3].numpy()) == pytest.approx(5 / 6, abs=1e-15)
    # labels as booleans, half-precision scores, a NaN score: NaN for that row only
    assert roc_auc_rows(y > 0.5, scores.half()).tolist() == [1.0, 0.0, 0.5, 5 / 6]
    bad = scores.clone()
    bad[1, 0] = math.nan
    out = roc_auc_rows(y, bad)
    assert math.isnan(out[1]) and out[[0, 2, 3]].tolist() == [1.0, 0.5, 5 / 6]
    # a missing class: NaN for every row
    assert roc_auc_rows(torch.ones(5), scores).isnan().all()
    assert roc_auc_rows(torch.zeros(5), scores).isnan().all()
    with pytest.raises(ValueError, match="scores"):
        roc_auc_rows(y, scores[:, :4])


@pytest.mark.parametrize("device", DEVICES)
def test_roc_auc_rows_equal_sklearn_and_row_by_row(device: str):
    """Rows of coarse random scores (many ties, as saturated or quantised scores have) equal sklearn's
    roc_auc_score; one batched call equals row-by-row calls exactly, in float32 and float64; on CUDA (where a GPU
    is lent) the result stays on the device and is the same number as on the CPU."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(3000, generator=g) < 0.15).double()
    scores = torch.randint(0, 40, (6, 3000), generator=g).double() + 5.0 * y
    scores[0] = torch.randn(3000, generator=g, dtype=torch.float64)  # one row without ties
    cpu = roc_auc_rows(y, scores)
    y, scores = y.to(device), scores.to(device)
    auc = roc_auc_rows(y, scores)
    assert auc.device.type == device
    assert torch.equal(auc.cpu(), cpu)
    y, scores, auc = y.cpu(), scores.cpu(), auc.cpu()
    for k in range(scores.shape[0]):
        assert auc[k].item() == pytest.approx(roc_auc_score(y.numpy(), scores[k].numpy()), abs=1e-12)
        assert auc[k].item() == roc_auc_rows(y, scores[k : k + 1])[0].item()
        assert auc[k].item() == pytest.approx(roc_auc(y.numpy(), scores[k].numpy()), abs=1e-12)
    assert torch.equal(roc_auc_rows(y, scores.float()), auc)  # integers: exact in float32 too


def test_binary_metrics_hand_case():
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.6]
    # predictions at 0.5: 1 1 0 1 0 0 0 1 -> TP 2, FN 1, FP 2, TN 3
    assert confusion(y, np.array(s) >= 0.5) == (2, 2, 3, 1)
    m = binary_metrics(y, s, 0.5)
    assert m["edge_efficiency"] == pytest.approx(2 / 3)  # TP/(TP+FN)
    assert m["edge_purity"] == pytest.approx(2 / 4)  # TP/(TP+FP)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    assert m["f1"] == pytest.approx(4 / 7)
    # the reference's "AUC" on 0/1 predictions equals the balanced accuracy
    assert m["auc_thresholded"] == pytest.approx(m["balanced_accuracy"])
    # a score equal to the threshold counts as positive
    assert binary_metrics(y, s, 0.3)["edge_efficiency"] == pytest.approx(1.0)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.3).astype(int)
    s = rng.random(300) * 0.6 + 0.4 * y
    p = (s >= 0.45).astype(int)
    m = binary_metrics(y, s, 0.45)
    assert m["edge_efficiency"] == pytest.approx(recall_score(y, p))
    assert m["edge_purity"] == pytest.approx(precision_score(y, p))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["f1"] == pytest.approx(f1_score(y, p))
    assert m["auc_thresholded"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    # the identity (1 + TPR - FPR) / 2 also where nothing or everything is predicted true
    for threshold in (-1.0, 0.2, 0.9, 2.0):
        p = (s >= threshold).astype(int)
        assert binary_metrics(y, s, threshold)["auc_thresholded"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_threshold_tpr_equals_tnr_and_max_f1_hand_case():
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    # at 0.6: TP 3 of 4, FP 1 of 4 -> TPR = TNR = 0.75
    assert choose_threshold(y, s, "tpr_tnr") == pytest.approx(0.6)
    # F1: 0.4 -> 8/9 (best), 0.6 -> 6/8, 0.7 -> 6/7, 0.3 -> 8/10
    assert choose_threshold(y, s, "max_f1") == pytest.approx(0.4)
    with pytest.raises(ValueError, match="both true and false"):
        choose_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="max_f1"):
        choose_threshold(y, s, "youden")  # type: ignore[arg-type]


def test_threshold_tpr_tnr_is_the_closest_crossing():
    rng = np.random.default_rng(2)
    y = rng.random(400) < 0.25
    s = rng.normal(size=400) + y
    thr = choose_threshold(y, s, "tpr_tnr")

    def gap(t: float) -> float:
        p = s >= t
        return abs(p[y].mean() - (~p[~y]).mean())

    assert gap(thr) == pytest.approx(min(gap(t) for t in np.unique(s)))



def test_threshold_tpr_tnr_hand_case_with_ties_and_no_exact_crossing():
    """3 true, 4 false edges, a tie at 0.6 across the classes; TPR = TNR is reached nowhere, 0.6 is closest."""
    y = [1, 1, 0, 1, 0, 0, 0]
    s = [0.9, 0.6, 0.6, 0.5, 0.3, 0.2, 0.1]
    # >= 0.9: TPR 1/3, TNR 4/4 (gap 2/3); >= 0.6: TPR 2/3, TNR 3/4 (gap 1/12); >= 0.5: TPR 1, TNR 3/4 (gap 1/4)
    assert choose_threshold(y, s, "tpr_tnr") == 0.6
    m = binary_metrics(y, s, 0.6)  # both edges at 0.6 are predicted true
    assert m["edge_efficiency"] == pytest.approx(2 / 3) and m["edge_purity"] == pytest.approx(2 / 3)


def test_equal_efficiency_from_different_models_on_a_small_split():
    """Why two seeds can report the same edge_efficiency (issue 18, item 4): it is TP / P, in steps of 1 / P of the
    test split's true edges (332 in the quick grid), and the TPR = TNR rule sets every model of similar quality at a
    similar TPR. Different scores, ranks and thresholds, same TP count: same efficiency, different AUC."""
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.3, 0.2, 0.1])
    b = np.array([0.5, 0.3, 0.9, 0.8, 0.35, 0.7, 0.1, 0.2])
    ta, tb = choose_threshold(y, a, "tpr_tnr"), choose_threshold(y, b, "tpr_tnr")
    # a: >= 0.6 passes 0.9, 0.8, 0.7 and the false 0.6 (TPR = TNR = 3/4); b: >= 0.5 passes 0.5, 0.9, 0.8 and the
    # false 0.7 (TPR = TNR = 3/4)
    assert (ta, tb) == (0.6, 0.5)
    ma, mb = binary_metrics(y, a, ta), binary_metrics(y, b, tb)
    assert ma["edge_efficiency"] == mb["edge_efficiency"] == 0.75
    assert roc_auc(y, a) != roc_auc(y, b)


def test_ant_factor():
    assert ant_factor(0.99, 1000) == pytest.approx(0.1)
    assert ant_factor(0.9913, 967) == pytest.approx(1 / (0.0087 * 967))
    assert ant_factor(1.0, 10) == math.inf
    with pytest.raises(ValueError):
        ant_factor(0.9, 0)


def test_efficiency_above_pt():
    y = [1, 1, 1, 0]
    s = [0.9, 0.2, 0.8, 0.9]
    pt = [2.5, 1.0, 1.6, 5.0]
    assert efficiency_above_pt(y, s, 0.5, pt, 0.9) == pytest.approx(2 / 3)
    assert efficiency_above_pt(y, s, 0.5, pt, 1.5) == pytest.approx(1.0)
    assert math.isnan(efficiency_above_pt(y, s, 0.5, [np.nan] * 4, 0.9))  # pT unknown
    assert math.isnan(efficiency_above_pt(y, s, 0.5, pt, 3.0))  # no true edge above the cut


def _constructed_event():
    """Hits and edges with known matching (see the comments); returns edge_index, scores, pid, pt."""
    # A: 4 hits, one clean track (perfect); B: 3 hits split 2 + 1 (no track candidate); C: 4 hits + a noise hit
    # in its track (DM and LHC, not perfect); D: 2 hits (not reconstructable); E (3 hits) merged with F (2 hits):
    # DM for E, not LHC
    a, b, c, noise, d, e, f = [1] * 4, [2] * 3, [3] * 4, [0], [4] * 2, [5] * 3, [6] * 2
    pid = np.array(a + b + c + noise + d + e + f)
    pt = np.array([2.0] * 4 + [0.5] * 3 + [1.0] * 4 + [np.nan] + [3.0] * 2 + [0.95] * 3 + [1.0] * 2)
    edges = [
        (0, 1, 0.9),
        (1, 2, 0.8),
        (2, 3, 0.95),
        (4, 5, 0.9),
        (5, 6, 0.1),
        (7, 8, 0.9),
        (8, 9, 0.9),
        (9, 10, 0.7),
        (10, 11, 0.6),
        (12, 13, 0.9),
        (14, 15, 0.9),
        (15, 16, 0.9),
        (16, 17, 0.9),
        (17, 18, 0.9),
        (3, 7, 0.2),
    ]  # a rejected fake edge between A and C
    ei = np.array([[a for a, _, _ in edges], [b for _, b, _ in edges]])
    scores = np.array([c for _, _, c in edges])
    return ei, scores, pid, pt


def test_connected_tracks_uses_threshold_inclusively():
    ei, scores, pid, _ = _constructed_event()
    labels = connected_tracks(ei, scores, 0.6, pid.size)
    assert len(set(labels[[7, 8, 9, 10, 11]])) == 1  # 0.6 >= 0.6 keeps the noise edge
    assert labels[3] != labels[7] and labels[5] != labels[6]
    labels = connected_tracks(ei, scores, 0.61, pid.size)
    assert labels[10] != labels[11]


def test_track_metrics_on_constructed_event():
    ei, scores, pid, pt = _constructed_event()
    labels = connected_tracks(ei, scores, 0.5, pid.size)
    m = track_metrics([match_event(labels, pid, pt=pt)])
    # reconstructable particles (>= 3 hits): A, B, C, E; tracks (>= 3 hits): A, C+noise, E+F
    assert m["track_perfect_eff"] == pytest.approx(1 / 4)  # A
    assert m["track_dm_eff"] == pytest.approx(3 / 4)  # A, C, E
    assert m["track_lhc_eff"] == pytest.approx(2 / 3)  # A (1.0), C (0.8); E+F has 0.6
    # TrackML score, uniform weights over the 18 non-noise hits: good components A (4), B's pair (2),
    # C (4), D (2), E (3) -> 15/18; B's single hit holds only 1/3 of B, F is a minority
    assert m["trackml_score"] == pytest.approx(15 / 18)
    # pT > 0.9: particles A, C, E (B is 0.5 GeV); tracks with such a majority: A, C, E
    assert m["track_perfect_eff_pt0p9"] == pytest.approx(1 / 3)
    assert m["track_dm_eff_pt0p9"] == pytest.approx(1.0)
    assert m["track_lhc_eff_pt0p9"] == pytest.approx(2 / 3)


def test_track_metrics_weights_events_and_unknown_pt():
    ei, scores, pid, pt = _constructed_event()
    labels = connected_tracks(ei, scores, 0.5, pid.size)
    one = match_event(labels, pid, pt=pt)
    two = track_metrics([one, match_event(labels, pid, pt=pt)])
    assert two == pytest.approx(track_metrics([one]))
    # truth weights: only particle A weighs -> score 1; all other weight on B's lone hit -> 0
    w = np.where(pid == 1, 1.0, 0.0)
    assert track_metrics([match_event(labels, pid, weight=w)])["trackml_score"] == pytest.approx(1.0)
    w = np.zeros(pid.size)
    w[6] = 1.0
    assert track_metrics([match_event(labels, pid, weight=w)])["trackml_score"] == pytest.approx(0.0)
    # unknown pT: the pT variants are left out
    m = track_metrics([match_event(labels, pid, pt=np.full(pid.size, np.nan))])
    assert "track_dm_eff_pt0p9" not in m and "track_dm_eff" in m
    # every hit on its own (nothing above threshold): no track candidate, efficiencies 0
    lone = connected_tracks(ei, scores, 2.0, pid.size)
    m = track_metrics([match_event(lone, pid)])
    assert m["track_dm_eff"] == 0.0 and math.isnan(m["track_lhc_eff"])


def test_match_event_majority_ties_and_empty_event():
    """A component's majority particle: most hits, a tie goes to the smaller pid, and noise (pid 0) can win it
    (the component then matches nothing); an event without hits counts nothing."""
    # component 10: 2 hits of pid 7, 2 of pid 3 -> majority 3: a double-majority match (2/4 >= 50 % of the
    # component, 2/3 > 50 % of pid 3's hits); with the tie going to 7 (2 hits in all) nothing would match
    # component 11: 2 noise hits, 2 hits of pid 5 -> majority 0 -> not a valid match
    # component 12: pid 3's third hit, with 2 hits of pid 9 -> majority 9 (all its hits, 2/3 of the component)
    labels = np.array([10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12])
    pid = np.array([7, 7, 3, 3, 0, 0, 5, 5, 3, 9, 9])
    c = match_event(labels, pid, min_hits=3)
    assert (c.n_particles, c.n_tracks) == (1, 3)  # only pid 3 has 3 hits; every component has >= 3
    assert (c.n_perfect, c.n_dm) == (0, 1)  # pid 3 is split 2 + 1: DM in component 10, not perfect
    assert c.n_lhc == 0  # no component is >= 75 % one particle
    # TrackML score (strictly more than 50 % of the component): only component 12 is good, 9 holding 2/3 of
    # it and all of its own hits: 2 of the 9 non-noise hits
    assert c.score_sum == pytest.approx(2 / 9)
    empty = match_event(np.array([], dtype=int), np.array([], dtype=int))
    assert (empty.n_particles, empty.n_tracks, empty.score_sum, empty.n_events) == (0, 0, 0.0, 1)
