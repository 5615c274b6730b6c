"""Model zoo: registry and errors, exact parameter counts, forward/backward on a real graph, batching, dtypes,
and both paths (plain default and ``fused=True``) against naive row-major evaluations of the definitions
(tests/test_model_paths.py compares the two paths with each other in float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from tracker.data.hitgraphs import load_npz
from tracker.models import (
    MODEL_NAMES,
    REGISTRY,
    ModelConfigError,
    build_model,
    count_parameters,
    resolve_hparams,
)
from tracker.models import euclidnet as euclidnet_mod
from tracker.models import interaction_network as in_mod
from tracker.models.common import psi
from tracker.models.fused.kernels import norm_act_fm

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def real_graph(real_npz_graphs) -> Data:
    assert real_npz_graphs, "no npz graphs in ../shared/trackml/hitgraphs_plus_1GeV5"
    return load_npz(real_npz_graphs[0])


@pytest.fixture(scope="module")
def small_graph(real_graph) -> Data:
    """The first 1,500 edges of a real graph (all nodes kept): fast and realistic."""
    g = real_graph.clone()
    g.edge_index, g.edge_attr, g.y = g.edge_index[:, :1500], g.edge_attr[:1500], g.y[:1500]
    return g


ALL_CONFIGS = [
    ("euclidnet", {}),
    ("euclidnet", {"preset": "paper_8"}),
    ("euclidnet", {"shared_block": False, "iterations": 2, "use_r": True, "edge_attr": True}),
    ("interaction_network", {}),
    ("interaction_network", {"undirected": True, "node_features": "rphiz", "shared_weights": False}),
    ("euclidnet_noneq", {}),
    ("hybrid", {}),
    ("hybrid", {"hidden_free": 0}),
    ("egnn", {}),
]


# -- registry and errors ------------------------------------------------------------------------------------
def test_model_names():
    assert set(MODEL_NAMES) == {"euclidnet", "interaction_network", "euclidnet_noneq", "hybrid", "egnn"}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_accepts_hidden(name):
    a, b = build_model(name, hidden=4), build_model(name, hidden=12)
    assert count_parameters(a) < count_parameters(b)


def test_unknown_model_lists_accepted():
    with pytest.raises(ModelConfigError) as err:
        build_model("transformer")
    for name in MODEL_NAMES:
        assert name in str(err.value)


def test_unknown_hparam_lists_accepted():
    with pytest.raises(ModelConfigError) as err:
        build_model("euclidnet", hiden=8)
    msg = str(err.value)
    assert "hiden" in msg and "hidden" in msg and "mlp_depth" in msg and "preset" in msg


def test_unknown_preset_lists_accepted():
    with pytest.raises(ModelConfigError, match="paper_8, paper_16, paper_32"):
        build_model("euclidnet", preset="paper_64")
    with pytest.raises(ModelConfigError, match="no presets"):
        build_model("egnn", preset="paper_8")


@pytest.mark.parametrize(
    "name, hp, fragment",
    [
        ("euclidnet", {"hidden": 0}, "hidden=0: expected an integer >= 1"),
        ("euclidnet", {"hidden": 8.5}, "expected an integer"),
        ("euclidnet", {"shared_block": "yes"}, "shared_block='yes': expected true or false"),
        ("euclidnet", {"c": -1.0}, "expected a number >= 0"),
        ("interaction_network", {"node_features": "xy"}, "expected one of ['xyz', 'rphiz']"),
        ("hybrid", {"hidden_free": -1}, "hidden_free=-1"),
        ("euclidnet", {"decoder_depth": -1}, "decoder_depth=-1: expected an integer >= 0"),
    ],
)
def test_bad_values_are_named(name, hp, fragment):
    with pytest.raises(ModelConfigError) as err:
        build_model(name, **hp)
    assert fragment in str(err.value) and name in str(err.value)


def test_explicit_hparams_override_preset():
    hp = resolve_hparams("euclidnet", preset="paper_8", c=0.01)
    assert hp["hidden"] == 8 and hp["mlp_depth"] == 1 and hp["c"] == 0.01
    assert build_model("euclidnet", preset="paper_8").preset == "paper_8"


# -- parameter counts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden, expected", [(8, 528), (16, 1432), (32, 4392), (40, 6448)])
def test_interaction_network_counts(hidden, expected):
    assert count_parameters(build_model("interaction_network", hidden=hidden)) == expected
    assert 3 * hidden**2 + 41 * hidden + 8 == expected
    assert in_mod.param_count(hidden) == expected


def test_interaction_network_unshared_count():
    m = build_model("interaction_network", hidden=16, shared_weights=False, iterations=3)
    h = 16
    assert count_parameters(m) == 3 * (2 * h * h + 28 * h + 7) + h * h + 13 * h + 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_preset_counts_as_documented(name):
    spec = REGISTRY[name]
    assert set(spec.presets) == set(spec.preset_counts)
    for preset, count in spec.preset_counts.items():
        assert count_parameters(build_model(name, preset=preset)) == count, (name, preset)


def test_euclidnet_presets_close_to_paper():
    for preset, paper in euclidnet_mod.PAPER_COUNTS.items():
        n = count_parameters(build_model("euclidnet", preset=preset))
        assert abs(n - paper) <= 6, (preset, n, paper)


@pytest.mark.parametrize(
    "hp",
    [
        {},
        {"hidden": 5, "mlp_depth": 2, "decoder_depth": 0},
        {"hidden": 7, "mlp_depth": 1, "use_r": True, "edge_attr": True},
        {"hidden": 6, "mlp_depth": 4, "shared_block": False, "iterations": 3},
    ],
)
def test_euclidnet_closed_form_count(hp):
    assert count_parameters(build_model("euclidnet", **hp)) == euclidnet_mod.param_count(**hp)
    assert count_parameters(build_model("euclidnet_noneq", **hp)) == euclidnet_mod.param_count(
        **hp, raw_coordinates=True
    )


def test_reference_euclidnet_size_formula():
    """Our EuclidNet at the reference's size (h = 8, L = 3) differs from its (7L+5)h(h+1)+2 = 1,874 by 32:
    ψ features also enter φ_m (eq. 3.1, +2h) and the decoder (+2h)."""
    assert (7 * 3 + 5) * 8 * 9 + 2 == 1874
    assert count_parameters(build_model("euclidnet", hidden=8, mlp_depth=3)) == 1874 + 32


def test_hybrid_without_free_channel_is_euclidnet():
    a = build_model("hybrid", hidden=6, hidden_free=0)
    b = build_model("euclidnet", hidden=6)
    assert count_parameters(a) == count_parameters(b)
    assert list(a.state_dict()) == list(b.state_dict())


# -- forward / backward -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, hp", ALL_CONFIGS)
def test_forward_backward_real_graph(name, hp, real_graph):
    torch.manual_seed(0)
    model = build_model(name, **hp)
    out = model(real_graph)
    assert out.shape == (real_graph.edge_index.shape[1],)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    F.binary_cross_entropy_with_logits(out, real_graph.y).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


@pytest.mark.parametrize("name, hp", ALL_CONFIGS)
def test_batch_equals_separate_graphs(name, hp, small_graph):
    torch.manual_seed(1)
    model = build_model(name, **hp).eval()
    g2 = small_graph.clone()
    g2.edge_index, g2.edge_attr, g2.y = g2.edge_index[:, :700], g2.edge_attr[:700], g2.y[:700]
    with torch.no_grad():
        both = model(Batch.from_data_list([small_graph, g2]))
        sep = torch.cat([model(small_graph), model(g2)])
    torch.testing.assert_close(both, sep, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_double_precision(name, small_graph):
    model = build_model(name).double()
    g = small_graph.clone()
    g.x, g.pos, g.edge_attr = g.x.double(), g.pos.double(), g.edge_attr.double()
    out = model(g)
    assert out.dtype == torch.float64
    out.sum().backward()


def _randomise(model: torch.nn.Module, std: float = 0.5, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_are_logits_not_probabilities(name, small_graph):
    model = _randomise(build_model(name), std=2.0)
    with torch.no_grad():
        out = model(small_graph)
    assert ((out < 0) | (out > 1)).any(), "outputs confined to (0, 1): a sigmoid inside the model?"


# -- the fast implementation equals the plain definitions ----------------------------------------------------
def _rowmajor_euclidnet(model, data: Data) -> torch.Tensor:
    """EuclidNet's equations evaluated naively (row-major, plain nn.Sequential calls, F.layer_norm)."""
    v, z = data.pos[:, :2], data.pos[:, 2:3]
    s, d = data.edge_index
    src, dst = torch.cat([s, d]), torch.cat([d, s])
    n = data.num_nodes
    h = model.node_encoder(z)
    e = model.edge_encoder.seq(torch.cat([h[dst], h[src]], 1))

    def inv(v, src, dst):
        diff = v[dst] - v[src]
        return diff, torch.stack([psi((diff**2).sum(1)), psi((v[dst] * v[src]).sum(1))], 1)

    for it in range(model.iterations):
        blk = model.block(it)
        diff, g = inv(v, src, dst)
        e = blk.phi_e.seq(torch.cat([g, e], 1))
        m = blk.phi_m.seq(torch.cat([h[dst], h[src], e, g], 1))
        upd = torch.clamp(diff * blk.phi_x(m), -100, 100)
        v = v + blk.c * torch.zeros(n, 2).index_add(0, dst, upd)
        h = h + blk.c * blk.phi_h(torch.cat([h, torch.zeros(n, m.shape[1]).index_add(0, dst, m)], 1))
    E = data.edge_index.shape[1]
    _, g = inv(v, src[:E], dst[:E])
    return model.decoder.seq(torch.cat([h[dst[:E]], h[src[:E]], e[:E], g], 1)).squeeze(-1)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("hp", [{}, {"preset": "paper_32"}, {"shared_block": False, "iterations": 2}])
def test_euclidnet_matches_plain_evaluation(hp, fused, small_graph):
    model = _randomise(build_model("euclidnet", fused=fused, **hp), std=0.3)
    for blk in model.blocks:  # large coordinate updates so that every term matters
        blk.c = 0.3
    fast = model(small_graph)
    plain = _rowmajor_euclidnet(model, small_graph)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    gf = torch.autograd.grad(fast.sum(), list(model.parameters()))
    gp = torch.autograd.grad(plain.sum(), list(model.parameters()))
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


def _rowmajor_interaction_network(model, data: Data) -> torch.Tensor:
    """DeZoort's IN evaluated naively: R1 on cat(x_i, x_j, a_ij), O on cat(x, Σ m), R2 on cat(x_i, x_j, m)."""
    x, (src, dst), a = data.pos, data.edge_index, data.edge_attr
    m = None
    for it in range(model.iterations):
        k = 0 if len(model.R1) == 1 else it
        m = model.R1[k].seq(torch.cat([x[dst], x[src], a], 1))
        x = model.O[k](torch.cat([x, torch.zeros(x.shape[0], 4).index_add(0, dst, m)], 1))
    return model.R2.seq(torch.cat([x[dst], x[src], m], 1)).squeeze(-1)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shared", [True, False])
def test_interaction_network_matches_definition(shared, fused, small_graph):
    model = _randomise(build_model("interaction_network", hidden=16, shared_weights=shared, fused=fused), std=0.4)
    fast, plain = model(small_graph), _rowmajor_interaction_network(model, small_graph)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
    for a, b in zip(torch.autograd.grad(fast.sum(), list(model.parameters())),
                    torch.autograd.grad(plain.sum(), list(model.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("act", ["silu", "sigmoid", None])
def test_fused_norm_activation_gradcheck(act):
    x = torch.randn(6, 9, dtype=torch.float64)
    x = (x - x.mean(0, keepdim=True)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: norm_act_fm(t.clone(), act), (x,))
    ref = F.layer_norm(x.detach().T, (6,)).T
    ref = {"silu": F.silu, "sigmoid": torch.sigmoid, None: lambda t: t}[act](ref)
    torch.testing.assert_close(norm_act_fm(x.detach().clone(), act), ref)


def test_psi():
    a = torch.tensor([-math.e + 1, 0.0, math.e - 1])
    torch.testing.assert_close(psi(a), torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_deepcopy_and_state_dict_roundtrip(name, small_graph):
    """Models hold no autograd tensors between forwards: deepcopy works, and a rebuilt model with the
    saved state dict gives the same logits (what checkpointing in training does)."""
    import copy

    model = build_model(name, hidden=6)
    out = model(small_graph)
    out.sum().backward()
    clone = copy.deepcopy(model)
    rebuilt = build_model(name, hidden=6)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref = model(small_graph)
        torch.testing.assert_close(clone(small_graph), ref)
        torch.testing.assert_close(rebuilt(small_graph), ref)


def test_presets_are_the_closest_configurations():
    from tracker.models.sizes import closest

    for preset, paper in euclidnet_mod.PAPER_COUNTS.items():
        n, cfg = closest(paper, k=1)[0]
        assert n == euclidnet_mod.PRESET_COUNTS[preset]
        assert {k: cfg[k] for k in euclidnet_mod.PRESETS[preset]} == euclidnet_mod.PRESETS[preset]
