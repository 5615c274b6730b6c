"""jets data: the trial config, Lorentz boosts and rotations, the toptag HDF5 reader (a file in the real layout,
and each defect it must name), and the cached, disjoint, balanced splits of a generated sample."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from jets.config import ConfigError, DataConfig, trial_from_dict
from jets.data.dataset import DatasetCacheError, balanced_order, load_splits, prepare
from jets.data.generated import pack_constituents, write_generated
from jets.data.toptag import N_CONSTITUENTS, ToptagFormatError, read_toptag
from jets.data.transforms import boost, minkowski_norm2, random_boosts, rotate

# ------------------------------------------------------------------------------------------------ helpers


def random_jets(n: int, n_max: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Massless constituents of collimated jets (pT-descending, zero padded), float64 [n, n_max, 4] and mask."""
    rng = np.random.default_rng(seed)
    p4 = np.zeros((n, n_max, 4))
    mask = np.zeros((n, n_max), dtype=bool)
    for i in range(n):
        k = int(rng.integers(2, n_max + 1))
        pt = np.sort(rng.uniform(1, 200, k))[::-1]
        phi, eta = rng.normal(0, 0.3, k), rng.normal(0, 0.3, k)
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        p4[i, :k] = np.stack([np.sqrt(px**2 + py**2 + pz**2) + rng.uniform(0, 1, k), px, py, pz], 1)
        mask[i, :k] = True
    return p4, mask


def write_generated_sample(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """A generated-sample npz of ``n`` jets (half top) in the format of jets.data.generated; returns labels."""
    p4, mask = random_jets(n, 12, seed)
    jets = [p4[i, mask[i]] for i in range(n)]
    constituents, offsets = pack_constituents(jets)
    label = (np.arange(n) % 2).astype(np.int8)
    write_generated(path, constituents, offsets, label, np.stack([j.sum(0) for j in jets]))
    return label


def write_toptag(path: Path, n: int, seed: int = 0, *, drop: str | None = None, nan_at: str | None = None) -> None:
    """A file in the layout of the Top Quark Tagging Reference Dataset (pandas HDF5, key 'table')."""
    p4, mask = random_jets(n, 30, seed)
    cols: dict[str, np.ndarray] = {}
    for f, c in (("E", 0), ("PX", 1), ("PY", 2), ("PZ", 3)):
        for i in range(N_CONSTITUENTS):
            cols[f"{f}_{i}"] = (p4[:, i, c] if i < 30 else np.zeros(n)).astype(np.float32)
    jet = p4.sum(1)
    cols.update({"truthE": jet[:, 0], "truthPX": jet[:, 1], "truthPY": jet[:, 2], "truthPZ": jet[:, 3],
                 "ttv": np.zeros(n, np.int8), "is_signal_new": (np.arange(n) % 2).astype(np.int8)})
    if drop:
        del cols[drop]
    if nan_at:
        cols[nan_at] = cols[nan_at].copy()
        cols[nan_at][1] = np.nan
    pd.DataFrame(cols).to_hdf(path, key="table", mode="w")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------ config


def test_config_defaults_and_errors_name_the_key() -> None:
    cfg = trial_from_dict({"model": {"name": "mlp", "hidden": 4}}, source="t.yaml")
    assert cfg.data.source == "generated" and cfg.model.hparams() == {"hidden": 4}
    assert cfg.eval.boost_axis == "x" and cfg.train.schedule == "cosine"
    with pytest.raises(ConfigError, match=r"(?s)t\.yaml.*train\.boost_augmnt"):
        trial_from_dict({"model": {"name": "mlp"}, "train": {"boost_augmnt": 0.5}}, source="t.yaml")
    with pytest.raises(ConfigError, match="data.path is required for source 'toptag'"):
        trial_from_dict({"model": {"name": "mlp"}, "data": {"source": "toptag"}})
    with pytest.raises(ConfigError, match="repeated metric names"):
        trial_from_dict({"model": {"name": "mlp"}, "eval": {"boosts_beta": [0.3, 0.301]}})
    with pytest.raises(ConfigError, match="outside"):
        trial_from_dict({"model": {"name": "mlp"}, "eval": {"boosts_beta": [1.0]}})
    with pytest.raises(ConfigError, match="model.name is required"):
        trial_from_dict({"model": {"hidden": 4}})


# ------------------------------------------------------------------------------------------------ transforms


def test_boost_hand_cases() -> None:
    beta, m = 0.6, 2.0
    gamma = 1 / math.sqrt(1 - beta**2)
    at_rest = np.array([m, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(boost(at_rest, beta, "z"), [gamma * m, 0, 0, gamma * beta * m], rtol=1e-15)
    np.testing.assert_allclose(boost(at_rest, beta, "x"), [gamma * m, gamma * beta * m, 0, 0], rtol=1e-15)
    # a massless particle along x, boosted along x: Doppler factor sqrt((1 + β) / (1 − β)) = 2 for β = 0.6
    np.testing.assert_allclose(boost(np.array([5.0, 5.0, 0, 0]), beta, "x"), [10.0, 10.0, 0, 0], rtol=1e-15)
    # transverse momentum is unchanged; a diagonal axis equals its 3-vector
    q = np.array([10.0, 1.0, 2.0, 3.0])
    assert boost(q, 0.5, "z")[1:3].tolist() == [1.0, 2.0]
    np.testing.assert_allclose(boost(q, 0.5, (1.0, 1.0, 0.0)), boost(q, 0.5, np.array([[2.0, 2.0, 0.0]]))[0])
    np.testing.assert_allclose(rotate(np.array([3.0, 1.0, 0.0, 0.0]), math.pi / 2, "z"), [3, 0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(rotate(np.array([3.0, 0.0, 0.0, 1.0]), math.pi / 2, "x"), [3, 0, -1, 0], atol=1e-15)


def test_boosts_preserve_minkowski_norm_and_masks() -> None:
    p4, mask = random_jets(40, 16)
    rng = np.random.default_rng(1)
    betas = rng.uniform(-0.95, 0.95, 40)
    axes = rng.normal(size=(40, 3))
    out = boost(p4, betas, axes)
    ref = minkowski_norm2(p4)
    scale = p4[..., 0] ** 2 + 1.0
    assert np.max(np.abs(minkowski_norm2(out) - ref) / scale) < 1e-12
    assert np.array_equal(out[~mask], np.zeros_like(out[~mask]))  # padding stays exactly zero
    assert np.array_equal(out[..., 0] != 0, mask)
    for i in (0, 17):  # per-jet arguments equal one jet at a time
        np.testing.assert_allclose(out[i], boost(p4[i], betas[i], axes[i]), rtol=1e-13, atol=1e-10)
    rot = rotate(p4, rng.uniform(0, 6, 40), axes)
    assert np.max(np.abs(minkowski_norm2(rot) - ref) / scale) < 1e-12
    np.testing.assert_allclose(boost(out, -betas, axes), p4, atol=1e-9)  # the inverse boost


def test_collinear_boosts_add_rapidities() -> None:
    p4, _ = random_jets(10, 8)
    b1, b2 = 0.7, -0.4
    combined = math.tanh(math.atanh(b1) + math.atanh(b2))
    for axis in ("x", "y", "z"):
        np.testing.assert_allclose(boost(boost(p4, b1, axis), b2, axis), boost(p4, combined, axis), atol=1e-9)
    # along z the rapidity of every particle grows by atanh(β)
    q = p4[:, 0]
    y0 = 0.5 * np.log((q[:, 0] + q[:, 3]) / (q[:, 0] - q[:, 3]))
    r = boost(q, b1, "z")
    np.testing.assert_allclose(0.5 * np.log((r[:, 0] + r[:, 3]) / (r[:, 0] - r[:, 3])), y0 + math.atanh(b1))


def test_boost_keeps_type_and_dtype_and_rejects_bad_input() -> None:
    p4, _ = random_jets(3, 4)
    t = torch.tensor(p4, dtype=torch.float32)
    out = boost(t, 0.9, "y")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    exact = boost(t.numpy().astype(np.float64), 0.9, "y")  # float64 arithmetic, rounded once to float32
    np.testing.assert_allclose(out.numpy(), exact.astype(np.float32), rtol=0, atol=0)
    assert boost(p4.astype(np.float32), 0.5, "x").dtype == np.float32
    with pytest.raises(ValueError, match="β"):
        boost(p4, 1.0, "x")
    with pytest.raises(ValueError, match="axis"):
        boost(p4, 0.5, "w")
    with pytest.raises(ValueError, match="zero vector"):
        boost(p4, 0.5, (0.0, 0.0, 0.0))


def test_random_boosts_are_seeded_and_bounded() -> None:
    b1, d1 = random_boosts(500, 0.8, torch.Generator().manual_seed(3))
    b2, d2 = random_boosts(500, 0.8, torch.Generator().manual_seed(3))
    b3, _ = random_boosts(500, 0.8, torch.Generator().manual_seed(4))
    assert torch.equal(b1, b2) and torch.equal(d1, d2) and not torch.equal(b1, b3)
    assert float(b1.min()) >= 0 and float(b1.max()) <= 0.8 and float(b1.max()) > 0.7
    torch.testing.assert_close(torch.linalg.vector_norm(d1, dim=1), torch.ones(500, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ toptag


def test_toptag_reads_the_reference_layout(tmp_path: Path) -> None:
    path = tmp_path / "train.h5"
    write_toptag(path, 12)
    p4, mask, label = read_toptag(path, n_jets=10, max_constituents=8)
    assert p4.shape == (10, 8, 4) and p4.dtype == np.float32 and mask.dtype == bool
    assert label.tolist() == [0, 1] * 5 and label.dtype == np.int8
    ref, ref_mask = random_jets(12, 30)
    n_keep = np.minimum(ref_mask.sum(1), 8)[:10]
    assert mask.sum(1).tolist() == n_keep.tolist()
    np.testing.assert_allclose(p4[0, : n_keep[0]], ref[0, : n_keep[0]].astype(np.float32))
    pt = np.hypot(p4[..., 1], p4[..., 2])
    assert np.all(np.diff(np.where(mask, pt, -1.0), axis=1) <= 0)  # pT-descending, padding last
    assert np.all(p4[~mask] == 0)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("truncated", r"truncated file"),
        ("foreign", r"not a readable HDF5 store"),
        ("other_key", r"no key 'table'"),
        ("missing_column", r"missing column\(s\) PX_17"),
        ("nan", r"NaN or infinite value\(s\), first in column PY_3 of jet 1"),
        ("too_few", r"12 jets, but 20 were asked for"),
        ("absent", r"no such file"),
    ],
)
def test_toptag_defects_give_one_error_naming_the_file(tmp_path: Path, defect: str, message: str) -> None:
    path = tmp_path / "val.h5"
    if defect == "truncated":
        write_toptag(path, 12)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif defect == "foreign":
        with open(path, "wb") as f:  # an npz under an .h5 name
            np.savez(f, x=np.arange(3))
    elif defect == "other_key":
        pd.DataFrame({"a": [1.0]}).to_hdf(path, key="jets", mode="w")
    elif defect in ("missing_column", "nan", "too_few"):
        write_toptag(path, 12, drop="PX_17" if defect == "missing_column" else None,
                     nan_at="PY_3" if defect == "nan" else None)
    with pytest.raises(ToptagFormatError) as err:
        read_toptag(path, n_jets=20 if defect == "too_few" else None)
    text = str(err.value)
    assert str(path) in text and len(text.splitlines()) == 1
    assert re.search(message, text), text
    if defect in ("truncated", "foreign", "other_key", "missing_column"):
        assert "E_i, PX_i, PY_i, PZ_i for i < 200 and is_signal_new" in text  # what was expected


def test_toptag_dataset_uses_each_file_for_its_split(tmp_path: Path) -> None:
    folder = tmp_path / "toptag"
    folder.mkdir()
    for i, name in enumerate(("train.h5", "val.h5", "test.h5")):
        write_toptag(folder / name, 20, seed=10 + i)
    cfg = DataConfig(source="toptag", path=str(folder), jets={"train": 16, "val": 6, "test": 8}, max_constituents=50)
    splits = load_splits(cfg)
    assert [len(splits.train), len(splits.val), len(splits.test)] == [16, 6, 8]
    assert splits.key.startswith("toptag-") and splits.train.p4.shape[1] <= 30  # unused padding columns cut
    p4_val, _, _ = read_toptag(folder / "val.h5", n_jets=6, max_constituents=50)
    width = splits.val.p4.shape[1]
    np.testing.assert_array_equal(splits.val.p4, p4_val[:, :width])
    (folder / "val.h5").write_bytes(b"not hdf5")
    with pytest.raises(ToptagFormatError, match="val.h5"):
        load_splits(cfg)  # the input files are part of the key: a changed file is read again


# ------------------------------------------------------------------------------------------------ dataset


def _ids(jets) -> set[float]:
    return set(jets.p4[:, 0, 0].tolist())  # the leading constituent's energy identifies a random jet


def test_generated_splits_are_disjoint_balanced_and_cached(tmp_path: Path, _cache: Path) -> None:
    path = tmp_path / "gen.npz"
    write_generated_sample(path, 120)
    cfg = DataConfig(path=str(path), jets={"train": 60, "val": 20, "test": 30}, max_constituents=6, seed=2)
    key = prepare(cfg)
    splits = load_splits(cfg)
    assert splits.key == key and (_cache / "jet_datasets" / key / "manifest.json").is_file()
    sets = (splits.train, splits.val, splits.test)
    assert [len(s) for s in sets] == [60, 20, 30]
    ids = [_ids(s) for s in sets]
    assert sum(map(len, ids)) == 110 and len(set.union(*ids)) == 110  # disjoint
    assert [int(s.label.sum()) for s in sets] == [30, 10, 15]  # balanced
    assert splits.train.p4.shape[1:] == (6, 4) and splits.train.mask.sum(1).max() == 6
    build_id = splits.manifest["build_id"]
    assert load_splits(cfg).manifest["build_id"] == build_id  # reused, not rebuilt
    # a larger train split keeps val and test; another seed changes them
    bigger = load_splits(DataConfig(path=str(path), jets={"train": 70, "val": 20, "test": 30}, max_constituents=6,
                                    seed=2))
    assert _ids(bigger.test) == ids[2] and _ids(bigger.val) == ids[1] and bigger.key != key
    other = load_splits(DataConfig(path=str(path), jets={"train": 60, "val": 20, "test": 30}, max_constituents=6,
                                   seed=3))
    assert _ids(other.test) != ids[2]


def test_dataset_cache_errors_and_rebuild(tmp_path: Path, _cache: Path) -> None:
    path = tmp_path / "gen.npz"
    write_generated_sample(path, 40)
    cfg = DataConfig(path=str(path), jets={"train": 20, "val": 10, "test": 10}, max_constituents=6)
    key = prepare(cfg)
    mpath = _cache / "jet_datasets" / key / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["stats"]["train"]["jets"] = 999
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(DatasetCacheError, match="manifest digest mismatch"):
        prepare(cfg)
    assert prepare(cfg, rebuild=True) == key
    assert len(load_splits(cfg).train) == 20
    with pytest.raises(ValueError, match=r"gen\.npz: 40 jets, but data.jets asks for 60"):
        prepare(DataConfig(path=str(path), jets={"train": 40, "val": 10, "test": 10}))
    with pytest.raises(FileNotFoundError, match="no such generated sample"):
        prepare(DataConfig(path=str(tmp_path / "absent.npz")))


def test_balanced_order_interleaves_the_classes() -> None:
    label = np.array([1, 1, 1, 0, 0, 1, 1])
    order = balanced_order(label, 0)
    assert sorted(order.tolist()) == list(range(7))
    assert label[order].tolist() == [1, 0, 1, 0, 1, 1, 1]
    assert np.array_equal(order, balanced_order(label, 0)) and not np.array_equal(order, balanced_order(label, 5))
