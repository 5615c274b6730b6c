"""Jet taggers: registry and errors, exact parameter counts, shapes, padding/permutation invariance, float64,
Lorentz invariance of the equivariant models (and measurable non-invariance of the others), and the batched
LorentzNet against a pair-by-pair evaluation of its equations."""

from __future__ import annotations

import math

import pytest
import torch
from devices import DEVICES
from torch import nn

from jets.models import (
    MODEL_NAMES,
    REGISTRY,
    ModelConfigError,
    build_model,
    count_parameters,
    is_equivariant,
    resolve_hparams,
)
from jets.models.common import minkowski, psi
from jets.models.particlenet import knn_edge_index

torch.set_num_threads(1)

# seed 002 table 1 (N_parameters) for the presets that mirror a published model
PAPER_COUNTS = {
    ("lorentznet", "paper"): 220_000,
    ("lgn", "paper"): 4_500,
    ("pelican", "paper"): 45_000,
    ("vecnet", "paper"): 633_000,
    ("vecnet", "paper_2"): 15_000,
    ("pfn", "paper"): 82_000,
    ("particlenet", "paper"): 498_000,
}
INVARIANT = [("lorentznet", {}), ("lgn", {}), ("pelican", {}), ("vecnet", {"hidden_free": 0})]
NOT_INVARIANT = [
    ("lorentznet_noneq", {}), ("mlp", {}), ("pfn", {}), ("particlenet", {}), ("vecnet", {}),
    ("vecnet", {"hidden_equivariant": 0}),
]


# -- Lorentz transformations and realistic jets ----------------------------------------------------------------
def boost_matrix(beta: float, axis) -> torch.Tensor:
    """4×4 boost by velocity β along the unit 3-vector ``axis`` (acting on (E, px, py, pz) columns)."""
    n = torch.as_tensor(axis, dtype=torch.float64)
    n = n / n.norm()
    g = 1.0 / math.sqrt(1.0 - beta * beta)
    lam = torch.eye(4, dtype=torch.float64)
    lam[0, 0] = g
    lam[0, 1:] = lam[1:, 0] = -g * beta * n
    lam[1:, 1:] += (g - 1.0) * torch.outer(n, n)
    return lam


def rotation_matrix(gen: torch.Generator) -> torch.Tensor:
    """4×4 random rotation (uniform unit quaternion) acting on the spatial part."""
    a, b, c, d = (q := torch.randn(4, generator=gen, dtype=torch.float64)) / q.norm()
    r = torch.tensor([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ], dtype=torch.float64)
    lam = torch.eye(4, dtype=torch.float64)
    lam[1:, 1:] = r
    return lam


def random_lorentz(gen: torch.Generator, beta_max: float = 0.9) -> torch.Tensor:
    """A random rotation times a random boost (β ≤ beta_max) along a random axis."""
    axis = torch.randn(3, generator=gen, dtype=torch.float64)
    beta = beta_max * (0.5 + 0.5 * float(torch.rand(1, generator=gen, dtype=torch.float64)))
    return boost_matrix(beta, axis) @ rotation_matrix(gen)


def make_jets(n_jets: int, n_max: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Massless-ish constituents of 10–600 GeV in a cone of ~0.2 around a random axis, pT sorted, zero padded."""
    gen = torch.Generator().manual_seed(seed)
    e = 10.0 + 590.0 * torch.rand(n_jets, n_max, generator=gen, dtype=torch.float64) ** 3
    eta = 0.8 * torch.randn(n_jets, 1, generator=gen, dtype=torch.float64)
    eta = eta + 0.2 * torch.randn(n_jets, n_max, generator=gen, dtype=torch.float64)
    phi = 6.0 * torch.rand(n_jets, 1, generator=gen, dtype=torch.float64)
    phi = phi + 0.2 * torch.randn(n_jets, n_max, generator=gen, dtype=torch.float64)
    mass = 0.14 * torch.rand(n_jets, n_max, generator=gen, dtype=torch.float64)
    pt = torch.sqrt(e * e - mass * mass) / torch.cosh(eta)
    p4 = torch.stack([e, pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)], dim=-1)
    p4 = p4.gather(1, torch.argsort(pt, dim=1, descending=True).unsqueeze(-1).expand_as(p4))
    n = torch.randint(3, n_max + 1, (n_jets,), generator=gen)
    n[0] = n_max
    mask = torch.arange(n_max).unsqueeze(0) < n.unsqueeze(1)
    return (p4 * mask.unsqueeze(-1)).to(dtype), mask


def seeded(name: str, seed: int = 0, **hp) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, **{"preset": "tiny", **hp})


def rel_dev(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / a.abs().max().clamp(min=1e-30))


# -- registry and errors ----------------------------------------------------------------------------------------
def test_model_names():
    assert set(MODEL_NAMES) == {
        "lorentznet", "lorentznet_noneq", "lgn", "pelican", "vecnet", "pfn", "particlenet", "mlp",
    }


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_accepts_hidden(name):
    assert build_model(name, hidden=6).hparams["hidden"] == 6


def test_unknown_model_lists_accepted():
    with pytest.raises(ModelConfigError, match="unknown model 'transformer'.*lorentznet.*particlenet"):
        build_model("transformer")


def test_unknown_hparam_lists_accepted():
    with pytest.raises(ModelConfigError, match=r"unknown hyperparameter\(s\) \['widht'\]; accepted: hidden"):
        build_model("lorentznet", widht=3)


def test_unknown_preset_lists_accepted():
    with pytest.raises(ModelConfigError, match="unknown preset 'huge'; accepted: tiny, small, paper"):
        build_model("pelican", preset="huge")


@pytest.mark.parametrize(("name", "hp", "fragment"), [
    ("lorentznet", {"hidden": 0}, "hidden=0: expected an integer >= 1"),
    ("lorentznet", {"c": -1.0}, "c=-1.0: expected a number >= 0.0"),
    ("lorentznet", {"beams": "yes"}, "beams='yes': expected true or false"),
    ("lorentznet", {"x_update": "sideways"}, "expected one of ['neighbour', 'difference']"),
    ("particlenet", {"dropout": 1.5}, "dropout=1.5: expected a number in [0, 1)"),
    ("pelican", {"act": "swish"}, "act='swish': expected one of"),
    ("vecnet", {"hidden_equivariant": 0, "hidden_free": 0}, "hidden_equivariant + hidden_free must be >= 1"),
])
def test_bad_values_are_named(name, hp, fragment):
    with pytest.raises(ModelConfigError) as err:
        build_model(name, **hp)
    assert fragment in str(err.value) and name in str(err.value)


def test_explicit_hparams_override_preset():
    hp = resolve_hparams("lorentznet", preset="paper", layers=2)
    assert (hp["hidden"], hp["layers"]) == (72, 2)


def test_is_equivariant_follows_the_dial():
    assert is_equivariant("vecnet", hidden_free=0) and not is_equivariant("vecnet", hidden_free=2)
    assert is_equivariant("lorentznet") and not is_equivariant("lorentznet", beams=True)
    assert [n for n in MODEL_NAMES if REGISTRY[n].equivariant] == ["lorentznet", "lgn", "pelican"]


# -- parameter counts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "preset"), [(n, p) for n in MODEL_NAMES for p in REGISTRY[n].presets])
def test_preset_counts_are_exact(name, preset):
    model = build_model(name, preset=preset)
    assert count_parameters(model) == REGISTRY[name].preset_counts[preset]
    assert model.preset == preset


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tiny_presets_are_tiny(name):
    assert 1_000 <= REGISTRY[name].preset_counts["tiny"] <= 3_000
    assert REGISTRY[name].preset_counts["tiny"] < REGISTRY[name].preset_counts["small"]


@pytest.mark.parametrize(("key", "paper"), PAPER_COUNTS.items())
def test_paper_presets_near_table_1(key, paper):
    name, preset = key
    assert abs(REGISTRY[name].preset_counts[preset] - paper) / paper < 0.02


def test_lorentznet_paper_count_formula():
    """223,495 = the reference configuration (72 hidden, 6 LGEBs) with one logit and one node scalar."""
    h, s, layers = 72, 1, 6
    phi_e = (2 * h + 2) * h + 2 * h + h * h + h
    phi_h = (2 * h + s) * h + h + 2 * h + h * h + h
    phi_x, phi_m = h * h + h + h, h + 1
    total = (s + 1) * h + layers * (phi_e + phi_h + phi_m) + (layers - 1) * phi_x + h * h + h + h + 1
    assert total == REGISTRY["lorentznet"].preset_counts["paper"] == 223_495


# -- forward: shapes, dtypes, padding, permutations ----------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_float32(name):
    p4, mask = make_jets(5, 12, seed=1, dtype=torch.float32)
    model = seeded(name).train()
    out = model(p4, mask)
    assert out.shape == (5,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_double_precision(name):
    p4, mask = make_jets(4, 10, seed=2)
    model = seeded(name).eval()
    out32 = model(p4.float(), mask)
    out64 = model.double()(p4, mask)
    assert out64.dtype == torch.float64
    assert torch.allclose(out64.float(), out32, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_does_not_matter(name, train):
    """Extra zero-padded slots (and garbage in them) leave the logits unchanged, in eval and in train mode
    (batch-norm statistics come from real constituents only)."""
    p4, mask = make_jets(5, 9, seed=3)
    hp = {"dropout": 0.0} if "dropout" in REGISTRY[name].defaults else {}
    model = seeded(name, **hp).double().train(train)
    out = model(p4, mask)
    pad = torch.randn(5, 6, 4, dtype=torch.float64) * 50.0
    p4_padded = torch.cat([p4, pad], dim=1)
    p4_padded[:, :9][~mask] = 7.0
    mask_padded = torch.cat([mask, torch.zeros(5, 6, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(p4_padded, mask_padded), out, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_permutation_invariance(name):
    p4, mask = make_jets(4, 11, seed=4)
    model = seeded(name).double().eval()
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model(p4[:, perm], mask[:, perm]), model(p4, mask), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_logits_on_every_device(name, device):
    p4, mask = make_jets(4, 10, seed=15)
    model = seeded(name).double().eval()
    expected = model(p4, mask)
    out = model.to(device)(p4.to(device), mask.to(device))
    assert out.device.type == device
    assert torch.allclose(out.cpu(), expected, rtol=1e-8, atol=1e-10)


def test_outputs_differ_between_jets():
    p4, mask = make_jets(6, 10, seed=5)
    for name in MODEL_NAMES:
        out = seeded(name).double().eval()(p4, mask)
        assert out.std() > 1e-6, name


# -- Lorentz invariance -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "hp"), INVARIANT)
@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_equivariant_models_are_lorentz_invariant(name, hp, preset):
    p4, mask = make_jets(6, 16, seed=6)
    model = seeded(name, seed=1, **{**hp, "preset": preset}).double().eval()
    gen = torch.Generator().manual_seed(7)
    out = model(p4, mask)
    for _ in range(3):
        lam = random_lorentz(gen)
        assert rel_dev(out, model(p4 @ lam.T, mask)) < 1e-6


@pytest.mark.parametrize(("name", "hp"), NOT_INVARIANT)
def test_other_models_are_not_boost_invariant(name, hp):
    p4, mask = make_jets(6, 16, seed=8)
    model = seeded(name, seed=1, **hp).double().eval()
    boosted = p4 @ boost_matrix(0.5, [1.0, 0.0, 0.0]).T
    assert rel_dev(model(p4, mask), model(boosted, mask)) > 1e-3


def test_lorentznet_coordinates_are_equivariant():
    p4, mask = make_jets(4, 12, seed=9)
    model = seeded("lorentznet", c=0.5).double().eval()
    with torch.no_grad():  # φ_x's output layer starts at Xavier gain 1e-3: make the coordinate update sizeable
        model.LGEBs[0].phi_x[2].weight.normal_()
    lam = random_lorentz(torch.Generator().manual_seed(10))
    h, x, _ = model.embed(p4, mask)
    h2, x2, _ = model.embed(p4 @ lam.T, mask)
    assert rel_dev(h, h2) < 1e-6
    assert rel_dev(x @ lam.T, x2) < 1e-6
    assert rel_dev(x, p4 / model.scale) > 1e-2  # the coordinates did move


def test_lgn_vectors_are_equivariant():
    p4, mask = make_jets(3, 10, seed=11)
    model = seeded("lgn").double().eval()
    lam = random_lorentz(torch.Generator().manual_seed(12))
    s, v = model.embed(p4, mask)
    s2, v2 = model.embed(p4 @ lam.T, mask)
    assert rel_dev(s, s2) < 1e-6 and rel_dev(v @ lam.T, v2) < 1e-6


def test_lorentznet_with_beams_keeps_only_rotations_about_z():
    """The fixed beam four-vectors (√2, 0, 0, ±1) GeV are only left alone by rotations about the beam axis."""
    p4, mask = make_jets(5, 12, seed=13)
    model = seeded("lorentznet", beams=True).double().eval()
    out = model(p4, mask)
    rot_z = torch.eye(4, dtype=torch.float64)
    c, s = math.cos(0.7), math.sin(0.7)
    rot_z[1:3, 1:3] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    assert rel_dev(out, model(p4 @ rot_z.T, mask)) < 1e-6
    assert rel_dev(out, model(p4 @ boost_matrix(0.5, [0, 0, 1.0]).T, mask)) > 1e-5  # round-off: 1e-15
    assert rel_dev(out, model(p4 @ boost_matrix(0.5, [1.0, 0, 0]).T, mask)) > 1e-5


# -- batched implementations against their definitions ----------------------------------------------------------
def naive_lorentznet(model, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LorentzNet evaluated jet by jet, pair by pair, straight from the equations of the module docstring."""
    g = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=p4.dtype)
    dot = lambda a, b: (a * b * g).sum()  # noqa: E731
    out = []
    for b in range(p4.shape[0]):
        x = p4[b][mask[b]] / model.scale
        n = x.shape[0]
        s = torch.stack([psi(dot(x[i], x[i])) for i in range(n)]).unsqueeze(-1)
        h = model.embedding(s)
        for blk in model.LGEBs:
            bn_e, bn_h = blk.phi_e[1], blk.phi_h[1]
            new_x, new_h = x.clone(), h.clone()
            msgs = {}
            for i in range(n):
                for j in range(n):
                    if i != j:
                        inp = torch.cat([h[i], h[j], psi(dot(x[i] - x[j], x[i] - x[j])).view(1),
                                         psi(dot(x[i], x[j])).view(1)])
                        e = blk.phi_e[0](inp)
                        e = (e - bn_e.running_mean) / torch.sqrt(bn_e.running_var + bn_e.eps) * bn_e.weight + bn_e.bias
                        e = blk.phi_e[4](blk.phi_e[3](torch.relu(e)))
                        msgs[i, j] = e * blk.phi_m(e)
            for i in range(n):
                nb = [j for j in range(n) if j != i]
                if not blk.last_layer and nb:
                    vec = (lambda j: x[i] - x[j]) if blk.x_update == "difference" else (lambda j: x[j])
                    new_x[i] = x[i] + blk.c * sum(blk.phi_x(msgs[i, j]) * vec(j) for j in nb) / len(nb)
                agg = sum((msgs[i, j] for j in nb), torch.zeros_like(h[i]))
                u = blk.phi_h[0](torch.cat([h[i], agg, s[i]]))
                u = (u - bn_h.running_mean) / torch.sqrt(bn_h.running_var + bn_h.eps) * bn_h.weight + bn_h.bias
                new_h[i] = h[i] + blk.phi_h[3](torch.relu(u))
            x, h = new_x, new_h
        out.append(model.graph_dec(h.mean(0)).squeeze(-1))
    return torch.stack(out)


@pytest.mark.parametrize("x_update", ["neighbour", "difference"])
def test_lorentznet_matches_its_equations(x_update):
    p4, mask = make_jets(3, 6, seed=14)
    model = seeded("lorentznet", x_update=x_update, c=0.3).double()
    with torch.no_grad():  # non-trivial batch-norm running statistics
        for blk in model.LGEBs:
            for bn in (blk.phi_e[1], blk.phi_h[1]):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(p4, mask), naive_lorentznet(model, p4, mask), rtol=1e-9, atol=1e-12)


def test_pelican_layer_is_permutation_equivariant_with_15_independent_maps():
    from jets.models.pelican import Eq2to2

    torch.manual_seed(0)
    layer = Eq2to2(3).double()
    t = torch.randn(1, 5, 5, 3, dtype=torch.float64)
    n = torch.tensor([5.0], dtype=torch.float64)
    perm = torch.randperm(5)
    out = layer(t, n)
    assert torch.allclose(layer(t[:, perm][:, :, perm], n), out[:, perm][:, :, perm])
    # each aggregator alone (one weight slice = identity) gives a different map: the 15 are independent
    basis = []
    for a in range(15):
        with torch.no_grad():
            layer.weight.zero_()
            layer.weight[a] = torch.eye(3, dtype=torch.float64)
        basis.append(layer(t, n).flatten())
    assert torch.linalg.matrix_rank(torch.stack(basis)) == 15


def test_knn_edges_are_the_nearest_real_neighbours():
    coords = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.2, 0.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    src, dst = knn_edge_index(coords, mask, k=2)
    edges = sorted(zip(dst.tolist(), src.tolist()))
    # real nodes 0..3 in flat numbering; node 4 is padding and never a neighbour
    assert edges == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 1), (3, 2)]


def test_psi_and_minkowski():
    a = torch.tensor([-3.0, 0.0, 2.0])
    assert torch.allclose(psi(a), torch.tensor([-math.log(4.0), 0.0, math.log(3.0)]))
    p = torch.tensor([5.0, 1.0, 2.0, 3.0])
    assert float(minkowski(p, p)) == 25.0 - 14.0
