"""The two paths of every zoo model compute the same function (issue 21, item 4): the plain default (row-major
PyTorch / PyG ``MessagePassing``) and ``fused=True`` (feature-major kernels), with the same parameters.

For every model and preset, on real graphs (../shared/trackml/hitgraphs_plus_1GeV5) in float64 with random weights
large enough that every term matters: equal logits, embeddings and parameter gradients to 1e-10 relative; one
path's state dict loads into the other; both paths are batched by ``torch.func.vmap`` (the vmap bundles).
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from tracker.data.hitgraphs import load_npz
from tracker.models import REGISTRY, build_model, count_parameters
from tracker.train.strategies import vmap_supported

torch.set_num_threads(1)

RTOL = 1e-10

CONFIGS = [(name, {"preset": p}) for name, spec in REGISTRY.items() for p in spec.presets] + [
    ("euclidnet", {}),
    ("euclidnet", {"shared_block": False, "iterations": 2, "use_r": True, "edge_attr": True}),
    ("euclidnet_noneq", {"use_r": True}),
    ("interaction_network", {"undirected": True, "node_features": "rphiz", "shared_weights": False}),
    ("hybrid", {}),
    ("hybrid", {"hidden_free": 0}),
    ("hybrid", {"hidden_free": 5, "use_r": True, "edge_attr": True, "shared_block": False, "iterations": 2}),
    ("egnn", {}),
    ("egnn", {"use_r": False, "edge_attr": False}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'default'}" for n, hp in CONFIGS]


def _double(g: Data) -> Data:
    g = g.clone()
    g.x, g.pos, g.edge_attr = g.x.double(), g.pos.double(), g.edge_attr.double()
    return g


@pytest.fixture(scope="module")
def graphs(real_npz_graphs) -> list[Data]:
    """Two real graphs in float64; the second cut to its first 3,000 edges (all nodes kept)."""
    a, b = (_double(load_npz(p)) for p in real_npz_graphs[:2])
    b.edge_index, b.edge_attr, b.y = b.edge_index[:, :3000], b.edge_attr[:3000], b.y[:3000]
    return [a, b]


def _pair(name: str, hp: dict, *, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(plain, fused) float64 models with the same random weights: the fused one loads the plain one's state dict."""
    torch.manual_seed(seed)
    plain = build_model(name, **hp).double()
    gen = torch.Generator().manual_seed(seed)
    std = 0.15 if name == "egnn" else 0.4
    with torch.no_grad():
        for p in plain.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    for blk in getattr(plain, "blocks", []):
        blk.c = 0.2  # large coordinate and node updates: every iteration matters
    fused = build_model(name, **hp, fused=True).double()
    fused.load_state_dict(plain.state_dict())
    for blk in getattr(fused, "blocks", []):
        blk.c = 0.2
    assert not plain.fused and fused.fused
    return plain, fused


def _assert_rel(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape, what
    a, b = a.detach(), b.detach()
    scale = b.abs().max().clamp(min=1e-300)
    err = float((a - b).abs().max() / scale)
    assert err <= RTOL, f"{what}: max relative difference {err:.2e} > {RTOL:.0e}"


@pytest.mark.parametrize("name, hp", CONFIGS, ids=IDS)
def test_same_logits_and_gradients(name, hp, graphs):
    plain, fused = _pair(name, hp)
    for gi, g in enumerate(graphs):
        out_p, out_f = plain(g), fused(g)
        assert out_p.shape == (g.edge_index.shape[1],) and out_p.dtype == torch.float64
        _assert_rel(out_f, out_p, f"{name} graph {gi}: logits")
        loss_p = torch.nn.functional.binary_cross_entropy_with_logits(out_p, g.y)
        loss_f = torch.nn.functional.binary_cross_entropy_with_logits(out_f, g.y)
        grads_p = torch.autograd.grad(loss_p, list(plain.parameters()))
        grads_f = torch.autograd.grad(loss_f, list(fused.parameters()))
        for (pname, _), gp, gf in zip(plain.named_parameters(), grads_p, grads_f):
            assert float(gp.abs().max()) > 0, f"{name}: {pname} gets no gradient"
            _assert_rel(gf, gp, f"{name} graph {gi}: d loss / d {pname}")


@pytest.mark.parametrize("name, hp", CONFIGS, ids=IDS)
def test_same_parameters_and_state_dict(name, hp):
    plain, fused = build_model(name, **hp), build_model(name, **hp, fused=True)
    assert count_parameters(plain) == count_parameters(fused)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in fused.state_dict().items()}
    plain.load_state_dict(fused.state_dict())  # strict: the same keys


@pytest.mark.parametrize("name", ["euclidnet", "euclidnet_noneq", "hybrid", "egnn"])
def test_same_embeddings(name, graphs):
    plain, fused = _pair(name, {"hidden_free": 4} if name == "hybrid" else {})
    ep, ef = plain.embed(graphs[1]), fused.embed(graphs[1])
    assert set(ep) == set(ef)
    for key in ep:
        _assert_rel(ef[key].double(), ep[key].double(), f"{name}: embed()[{key!r}]")


@pytest.mark.parametrize("name", list(REGISTRY))
def test_same_on_a_batch(name, graphs):
    plain, fused = _pair(name, {})
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        _assert_rel(fused(batch), plain(batch), f"{name}: batched logits")


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_both_paths_vmap(name, fused, graphs):
    """torch.func.vmap batches forward and backward of both paths (the vmap bundles of tracker.train)."""
    torch.manual_seed(0)
    g = graphs[1].clone()
    g.x, g.pos, g.edge_attr = g.x.float(), g.pos.float(), g.edge_attr.float()
    ok, why = vmap_supported(build_model(name, hidden=4, iterations=1, fused=fused), g)
    assert ok, why


def test_fused_is_a_validated_hyperparameter():
    from tracker.models import ModelConfigError

    with pytest.raises(ModelConfigError, match="fused='yes': expected true or false"):
        build_model("euclidnet", fused="yes")
    assert build_model("interaction_network", preset="paper_8", fused=True).hparams["fused"] is True


def test_fused_key_keeps_existing_config_ids():
    """``model.fused`` is a key added later: at its default it leaves config ids (and checkpoint hashes) as they
    were; asking for the fused path is a different cell (float round-off differs between the paths)."""
    import copy
    from pathlib import Path

    from sweeps.schema import config_id, load_grid, resolve

    cell = resolve(load_grid(Path(__file__).resolve().parents[1] / "sweeps/grids/paper_rotation.yaml"))[0]
    plain = copy.deepcopy(cell.trial)
    plain["model"]["fused"] = False
    fused = copy.deepcopy(cell.trial)
    fused["model"]["fused"] = True
    assert config_id(plain) == config_id(cell.trial) == cell.config_id
    assert config_id(fused) != cell.config_id


@pytest.mark.parametrize("name", list(REGISTRY))
def test_vmapped_paths_agree(name, graphs):
    """Two members stacked as the vmap bundles stack them (torch.func.stack_module_state, functional_call, vmap):
    plain and fused give each member's own logits and gradients (float64, 1e-10)."""
    g = graphs[1]
    hp = {"hidden": 5, "iterations": 2}
    pairs = [_pair(name, hp, seed=seed) for seed in (0, 1)]
    params, buffers = torch.func.stack_module_state([plain for plain, _ in pairs])

    def loss(template, p, b):
        logits = torch.func.functional_call(template, (p, b), (g,))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, g.y), logits

    results = {}
    for path, template in (("plain", pairs[0][0]), ("fused", pairs[0][1])):
        grad_fn = torch.func.grad(lambda p, b, t=template: loss(t, p, b), has_aux=True)
        results[path] = torch.func.vmap(grad_fn)(params, buffers)
    (grads_p, logits_p), (grads_f, logits_f) = results["plain"], results["fused"]
    for k, (plain, _) in enumerate(pairs):
        own = plain(g)
        _assert_rel(logits_p[k], own, f"{name} member {k}: vmapped plain logits")
        _assert_rel(logits_f[k], own, f"{name} member {k}: vmapped fused logits")
        for pname in grads_p:
            _assert_rel(grads_f[pname][k], grads_p[pname][k], f"{name} member {k}: vmapped d loss / d {pname}")
