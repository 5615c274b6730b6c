"""The benchmarks' re-implementations of the public reference models must stay faithful (issue 4's speed ratios
are measured against them): parameter counts as quoted for the reference, and a forward on a real graph. The
end-to-end benchmark's variants must differ only in how cells become Ray trials and worker processes."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.reference_models import RefEuclidNet, RefInteractionNetwork
from benchmarks.sweep_e2e import scaled_grid
from tracker.data.hitgraphs import load_npz
from tracker.models import count_parameters


def test_reference_parameter_counts() -> None:
    assert count_parameters(RefEuclidNet(8, 3, 5, 0.005)) == 1874  # the reference EuclidNet at hidden 8
    assert count_parameters(RefInteractionNetwork(16, 3)) == 1432  # DeZoort's IN at hidden 16


def test_reference_models_score_every_edge_of_a_real_graph(real_npz_graphs) -> None:
    g = load_npz(real_npz_graphs[0])
    n_edges = g.edge_index.shape[1]
    und = torch.cat([g.edge_index, g.edge_index.flip(0)], dim=1)
    with torch.no_grad():
        eucl = RefEuclidNet(8, 3, 5, 0.005)(g.pos, und).squeeze(-1)
        inet = RefInteractionNetwork(16, 3)(g.pos, g.edge_index, g.edge_attr).squeeze(-1)
    assert eucl.shape == (2 * n_edges,) and inet.shape == (n_edges,)
    for scores in (eucl, inet):  # sigmoid outputs, as the reference trains them
        assert torch.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()


def test_end_to_end_variants_differ_only_in_bundles_and_worker_processes(tmp_path: Path) -> None:
    from sweeps.schema import load_grid

    args = argparse.Namespace(train_events=2, epochs=2, deterministic="grid", seeds=5, seeds_unbundled=None,
                              models=None, gpus_bundled=0.0, gpus_unbundled=0.0, concurrent=2, max_bundle_size=None,
                              device="cpu", fused=False)
    grids = {}
    for variant in ("bundled", "unbundled", "naive"):
        (tmp_path / variant).mkdir()
        grids[variant] = load_grid(scaled_grid(args, variant=variant, root=tmp_path / variant))
    assert (grids["bundled"].bundle, grids["bundled"].ray.reuse_actors) == ("auto", True)
    assert (grids["unbundled"].bundle, grids["unbundled"].ray.reuse_actors) == ("none", True)
    assert (grids["naive"].bundle, grids["naive"].ray.reuse_actors) == ("none", False)
    for g in grids.values():
        assert g.train == grids["bundled"].train and g.grid == grids["bundled"].grid and g.seeds == [0, 1, 2, 3, 4]
    fused = load_grid(scaled_grid(argparse.Namespace(**{**vars(args), "fused": True}), variant="bundled",
                                  root=tmp_path / "bundled"))
    assert all(m.get("fused") is True for m in fused.models.values())  # --fused: every model on its fused kernels
    assert all("fused" not in m for m in grids["bundled"].models.values())
