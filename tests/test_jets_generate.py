"""The generated jet sample: its file format (reader, writer, validation), the shipped sample's contents, the
generator's selection and truth matching, N-subjettiness, and the generator end to end (needs pythia8mc)."""

from __future__ import annotations

import importlib.util
import zipfile

import numpy as np
import pytest

from jets.data.generated import (
    SAMPLE_PATH,
    GeneratedFormatError,
    load_generated,
    pack_constituents,
    read_arrays,
    write_generated,
)
from jets.generate import (
    JET_ETA_MAX,
    JET_PT_MAX,
    JET_PT_MIN,
    chunk_seed,
    is_matched,
    pythia_settings,
    select_jets,
    sort_by_pt,
    top_decays,
    visible_final,
)
from jets.substructure import jet_mass, tau_from_axes

HAS_FASTJET = importlib.util.find_spec("fastjet") is not None
HAS_PYTHIA = importlib.util.find_spec("pythia8mc") is not None
needs_fastjet = pytest.mark.skipif(not HAS_FASTJET, reason='fastjet not installed (pip install -e ".[jetgen]")')


def p4(pt: float, eta: float, phi: float, m: float = 0.0) -> list[float]:
    """(E, px, py, pz) of a particle."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return [float(np.sqrt(px * px + py * py + pz * pz + m * m)), px, py, pz]


def small_set() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Three jets (3, 1 and 2 constituents), pT-sorted, in the file's arrays."""
    jets = [
        np.array([p4(300, 0.1, 0.0), p4(200, 0.2, 0.1), p4(50, 0.0, -0.1)]),
        np.array([p4(600, -1.0, 2.0)]),
        np.array([p4(400, 1.0, -1.0), p4(180, 1.1, -1.2)]),
    ]
    const, offsets = pack_constituents(jets)
    jet = np.array([j.sum(axis=0) for j in jets])
    return const, offsets, np.array([1, 0, 1], dtype=np.int8), jet


# ---------------------------------------------------------------- file format


def test_write_and_load_round_trip(tmp_path):
    const, offsets, label, jet = small_set()
    path = write_generated(tmp_path / "jets.npz", const, offsets, label, jet)
    arr = read_arrays(path)
    assert arr["constituents"].dtype == np.float32 and arr["offsets"].dtype == np.int64
    assert arr["label"].dtype == np.int8 and arr["jet"].dtype == np.float32
    np.testing.assert_array_equal(arr["offsets"], [0, 3, 4, 6])

    x, mask, y = load_generated(path)
    assert x.shape == (3, 3, 4) and x.dtype == np.float32
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(y, label)
    np.testing.assert_allclose(x[2, :2], const[4:6], rtol=1e-6)
    assert not x[~mask].any()  # padding is zero

    x2, mask2, _ = load_generated(path, max_constituents=2)
    assert x2.shape == (3, 2, 4)
    np.testing.assert_array_equal(mask2, [[1, 1], [1, 0], [1, 1]])
    np.testing.assert_allclose(x2[0], const[:2], rtol=1e-6)  # the leading two
    with pytest.raises(ValueError, match="max_constituents"):
        load_generated(path, max_constituents=0)


def _npz(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("jet"), r"missing array\(s\) \['jet'\]"),
        (lambda a: a.update(offsets=np.array([0, 3, 4, 5])), "offsets run from 0 to 5, expected 0 to 6"),
        (lambda a: a.update(offsets=np.array([0, 4, 3, 6])), "offsets give jet 1 -1 constituents"),
        (lambda a: a.update(offsets=np.array([1, 3, 4, 6])), "offsets run from 1 to 6"),
        (lambda a: a.update(label=np.array([1, 0], dtype=np.int8)), r"label has shape \(2,\).*expected integer \[3\]"),
        (lambda a: a.update(label=np.array([1, 2, 0], dtype=np.int8)), "expected 0 or 1"),
        (lambda a: a.update(jet=a["jet"][:, :3]), r"jet has shape \(3, 3\)"),
        (lambda a: a.update(constituents=a["constituents"][:, :3]), r"constituents has shape \(6, 3\)"),
        (lambda a: a["constituents"].__setitem__((4, 2), np.nan), "constituents contains NaN"),
        (lambda a: a["jet"].__setitem__((0, 0), np.inf), "jet contains NaN or infinite"),
        (lambda a: a.update(constituents=a["constituents"][[1, 0, 2, 3, 4, 5]]), "jet 0's constituents are not sorted"),
        (lambda a: a.update(constituents=a["constituents"][[0, 1, 2, 3, 5, 4]]), "jet 2's constituents are not sorted"),
    ],
)
def test_inconsistent_file_is_one_clear_error(tmp_path, change, message):
    const, offsets, label, jet = small_set()
    arrays = {"constituents": const.copy(), "offsets": offsets.copy(), "label": label.copy(), "jet": jet.astype(np.float32)}
    change(arrays)
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GeneratedFormatError, match=message) as err:
        load_generated(path)
    assert str(path) in str(err.value)


def test_truncated_foreign_and_missing_files(tmp_path):
    good = write_generated(tmp_path / "good.npz", *small_set())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = _npz(tmp_path / "foreign.npz", X=np.zeros((3, 3)), y=np.zeros(3))
    text = tmp_path / "text.npz"
    text.write_text("E_0,PX_0\n1,2\n")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    cases = {
        truncated: "not a readable npz file",
        foreign: r"missing array\(s\) \['constituents', 'offsets', 'label', 'jet'\]",
        text: "not a readable npz file",
        single: "a single .npy array",
        tmp_path / "absent.npz": "no such file",
    }
    for path, message in cases.items():
        with pytest.raises(GeneratedFormatError, match=message) as err:
            load_generated(path)
        assert str(path) in str(err.value) and "offsets int64" in str(err.value)
    assert zipfile.is_zipfile(good)


def test_writer_refuses_bad_arrays_and_writes_nothing(tmp_path):
    const, offsets, label, jet = small_set()
    const[0, 0] = np.nan
    with pytest.raises(GeneratedFormatError, match="NaN"):
        write_generated(tmp_path / "x.npz", const, offsets, label, jet)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the shipped sample


@pytest.fixture(scope="module")
def shipped():
    return read_arrays(SAMPLE_PATH)


def test_shipped_sample_counts_balance_and_size(shipped):
    label = shipped["label"]
    assert len(label) >= 20_000
    assert (label == 1).sum() == (label == 0).sum()
    assert SAMPLE_PATH.stat().st_size <= 20 * 1024 * 1024
    notes = (SAMPLE_PATH.parent / "SAMPLE.md").read_text()
    assert "python -m jets.generate" in notes and "--seed" in notes
    for word in ("pythia8mc", "fastjet", "numpy", "python"):
        assert word in notes


def test_shipped_jets_in_window_sorted_and_summed(shipped):
    jet = shipped["jet"].astype(np.float64)
    const = shipped["constituents"].astype(np.float64)
    offsets = shipped["offsets"]
    pt = np.hypot(jet[:, 1], jet[:, 2])
    eta = np.arcsinh(jet[:, 3] / pt)
    assert pt.min() > JET_PT_MIN and pt.max() < JET_PT_MAX
    assert np.abs(eta).max() < JET_ETA_MAX
    cpt = np.hypot(const[:, 1], const[:, 2])
    falls = np.diff(cpt) <= 1e-6 * cpt[1:]
    falls[offsets[1:-1] - 1] = True  # a new jet may start higher
    assert falls.all()
    sums = np.add.reduceat(const, offsets[:-1], axis=0)
    capped = "leading" in (SAMPLE_PATH.parent / "SAMPLE.md").read_text()
    full = np.ones(len(jet), bool) if not capped else np.diff(offsets) < np.diff(offsets).max()
    np.testing.assert_allclose(sums[full], jet[full], rtol=0, atol=1e-3 * jet[full, :1].max())
    # top jets are heavier than QCD jets on average: the labels are not swapped
    mass = np.sqrt(np.maximum(jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(axis=1), 0))
    assert np.median(mass[shipped["label"] == 1]) > 1.5 * np.median(mass[shipped["label"] == 0])


def test_shipped_sample_loads_padded(shipped):
    x, mask, y = load_generated(max_constituents=50)  # truncated to the leading 50
    assert x.shape == (len(shipped["label"]), 50, 4) and mask[:, 0].all()
    np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(np.diff(shipped["offsets"]), 50))
    x, mask, _ = load_generated(max_constituents=200)  # padded to the longest stored jet (the file's cap, 80)
    assert x.shape[1] == np.diff(shipped["offsets"]).max() == 80


# ---------------------------------------------------------------- generator pieces (no Pythia needed)


def test_selection_sorting_and_visible_particles():
    jets = np.array([p4(600, 0.0, 0.0, 170), p4(549, 0.0, 0.0), p4(651, 0.0, 0.0), p4(600, 2.1, 1.0), p4(600, -1.9, 1.0)])
    np.testing.assert_array_equal(select_jets(jets), [True, False, False, False, True])
    c = np.array([p4(5, 0, 0), p4(50, 0, 0), p4(20, 0, 0)])
    np.testing.assert_allclose(np.hypot(*sort_by_pt(c)[:, 1:3].T), [50, 20, 5])
    ids = np.array([211, 12, -14, 22, 2212, 111])
    status = np.array([1, 1, 1, 1, 1, -2])
    parts = np.array([p4(1, 0, 0), p4(1, 0, 0), p4(1, 0, 0), p4(1, 2.6, 0), p4(1, -2.4, 0), p4(1, 0, 0)])
    np.testing.assert_array_equal(visible_final(ids, status, parts), [True, False, False, False, True, False])


def test_top_decays_and_truth_matching():
    # a hand-made record: 1 top (copy) -> 2 top (decaying) -> 3 W, 4 b; W copy 5 -> 6 u, 7 d~
    ids = np.array([90, 6, 6, 24, 5, 24, 2, -1])
    d1 = np.array([0, 2, 3, 5, 0, 6, 0, 0])
    d2 = np.array([0, 2, 4, 5, 0, 7, 0, 0])
    top = p4(600, 0.0, 0.0, 173)
    b, q1, q2 = p4(200, 0.1, 0.3), p4(250, -0.2, -0.2), p4(150, 0.3, 0.0)
    record = np.array([[0, 0, 0, 0], top, top, p4(400, 0, 0, 80), b, p4(400, 0, 0, 80), q1, q2])
    decays = top_decays(ids, d1, d2, record)
    assert len(decays) == 1
    np.testing.assert_allclose(decays[0], [top, b, q1, q2])
    assert is_matched(np.array(p4(600, 0.0, 0.0, 170)), decays)
    assert not is_matched(np.array(p4(600, 0.0, 0.6, 170)), decays)  # b at dR 0.3 is fine, q1 at dR 0.82 is not
    # a W that did not give two quarks cannot be matched: no entry
    ids_lep = ids.copy()
    ids_lep[6:] = [11, -12]
    assert top_decays(ids_lep, d1, d2, record) == []


def test_pythia_settings_and_seeds():
    top = pythia_settings("top", 7)
    assert "Random:seed = 7" in top and "24:onIfAny = 1 2 3 4 5" in top and "Beams:eCM = 14000.0" in top
    assert "HardQCD:all = on" in pythia_settings("qcd", 7)
    with pytest.raises(ValueError, match="process 'w'"):
        pythia_settings("w", 7)
    seeds = {chunk_seed(19, p, c) for p in ("top", "qcd") for c in range(50)}
    assert len(seeds) == 100 and all(1 <= s <= 900_000_000 for s in seeds)
    assert chunk_seed(19, "top", 3) == chunk_seed(19, "top", 3) != chunk_seed(20, "top", 3)


# ---------------------------------------------------------------- N-subjettiness


def test_tau_from_axes_by_hand():
    two = np.array([p4(100, 0.0, 0.2), p4(100, 0.0, -0.2)])
    # one axis along the sum (eta = phi = 0): each parton at dR = 0.2, tau1 = 0.2 / R0
    assert tau_from_axes(two, two.sum(axis=0, keepdims=True)) == pytest.approx(0.25)
    assert tau_from_axes(two, two) == 0.0
    assert jet_mass(two) == pytest.approx(200 * np.sin(0.2), rel=1e-9)  # 2 p1.p2 = 2 pT^2 (1 - cos 0.4)


@needs_fastjet
def test_nsubjettiness_of_three_partons():
    from jets.substructure import nsubjettiness, tau32

    three = np.array([p4(200, 0.0, 0.0), p4(200, 0.3, 0.5), p4(200, -0.3, 0.4)])
    assert nsubjettiness(three, 3) == 0.0 and tau32(three) == 0.0
    assert nsubjettiness(three, 2) > 0.1
    two = np.array([p4(100, 0.0, 0.2), p4(100, 0.0, -0.2)])
    assert nsubjettiness(two, 1) == pytest.approx(0.25, rel=1e-9)
    assert nsubjettiness(np.vstack([two, np.zeros((3, 4))]), 1) == pytest.approx(0.25, rel=1e-9)  # padding ignored


@needs_fastjet
def test_clustering_of_synthetic_events():
    from jets.generate import cluster_events

    ev1 = np.array([p4(400, 0.1, 0.0), p4(200, 0.3, 0.2), p4(100, -0.2, 0.1), p4(250, 0.5, 3.0), p4(350, 0.4, 3.1)])
    ev2 = np.array([p4(700, -1.0, 1.0), p4(1, 0.0, -2.0)])
    out = cluster_events(np.concatenate([ev1, ev2]), np.array([5, 2]), pt_min=100)
    assert len(out) == 2
    (jets1, idx1), (jets2, idx2) = out
    assert [sorted(i.tolist()) for i in idx1] == [[0, 1, 2], [3, 4]]  # sorted by jet pT
    np.testing.assert_allclose(jets1[0], ev1[[0, 1, 2]].sum(axis=0), rtol=1e-12)
    assert len(jets2) == 1 and idx2[0].tolist() == [0]


# ---------------------------------------------------------------- end to end (needs pythia8mc)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_PYTHIA or not HAS_FASTJET, reason='pythia8mc/fastjet not installed (pip install -e ".[jetgen]")')
def test_generator_end_to_end_is_deterministic(tmp_path, monkeypatch):
    import jets.generate as gen

    monkeypatch.setattr(gen, "BATCH_EVENTS", 20)
    a = gen.generate(tmp_path / "a", n_jets=4, seed=5, chunk_jets=1)
    b = gen.generate(tmp_path / "b", n_jets=4, seed=5, chunk_jets=2)  # other chunking of the same seed
    arr_a = read_arrays(a)
    x, mask, y = load_generated(a)
    assert sorted(y.tolist()) == [0, 0, 1, 1] and mask[:, 0].all()
    pt = np.hypot(arr_a["jet"][:, 1], arr_a["jet"][:, 2])
    assert ((pt > JET_PT_MIN) & (pt < JET_PT_MAX)).all()
    assert "python -m jets.generate" in (tmp_path / "a" / "SAMPLE.md").read_text()
    assert not (tmp_path / "a" / ".chunks").exists()
    c = gen.generate(tmp_path / "c", n_jets=4, seed=5, chunk_jets=1)
    for k, v in read_arrays(c).items():
        np.testing.assert_array_equal(v, arr_a[k])
    assert read_arrays(b)["offsets"].shape == (5,)


# ---------------------------------------------------------------- the pipeline with a stand-in for Pythia


class _ToyPythia:
    """Stands in for ``pythia8mc.Pythia``: ``nextBatch`` gives awkward events in Pythia's layout (fields of
    ``Pythia.nextBatch``: ``prt`` records with id, status, daughter1/2 and p = (px, py, pz, e)) whose final state is a
    few collinear sprays around the hard partons, so that the clustering, selection and truth matching run."""

    def __init__(self, process: str, seed: int):
        self.process, self.rng = process, np.random.default_rng(seed)

    def _spray(self, parton: list[float], n: int) -> list[list[float]]:
        e, px, py, pz = parton
        pt, eta, phi = np.hypot(px, py), np.arcsinh(pz / np.hypot(px, py)), np.arctan2(py, px)
        shares = self.rng.dirichlet(np.ones(n))
        return [p4(pt * s, eta + self.rng.normal(0, 0.05), phi + self.rng.normal(0, 0.05)) for s in shares]

    def _event(self) -> dict:
        eta, phi = self.rng.uniform(-1, 1), self.rng.uniform(-np.pi, np.pi)
        pt = self.rng.uniform(560, 640) / 0.995
        rows: list[tuple[int, int, int, int, list[float]]] = [(90, -11, 0, 0, [0.0, 0.0, 0.0, 0.0])]
        if self.process == "top":
            b, q1, q2 = p4(0.4 * pt, eta + 0.2, phi), p4(0.35 * pt, eta - 0.1, phi + 0.2), p4(0.25 * pt, eta, phi - 0.25)
            w = list(np.add(q1, q2))
            rows += [(6, -62, 2, 3, list(np.add(w, b))), (24, -22, 4, 5, w), (5, -23, 0, 0, b), (2, -23, 0, 0, q1)]
            rows += [(-1, -23, 0, 0, q2)]
            partons = [b, q1, q2]
        else:
            partons = [p4(pt, eta, phi)]
            rows += [(21, -23, 0, 0, partons[0])]
        for parton in partons:
            rows += [(211, 91, 0, 0, q) for q in self._spray(parton, 6)]
        rows += [(12, 91, 0, 0, p4(30, eta, phi)), (22, 91, 0, 0, p4(1, 3.5, 0))]  # invisible, forward
        return {
            "prt": [
                {"id": i, "status": s, "daughter1": d1, "daughter2": d2, "p": dict(zip(("e", "px", "py", "pz"), q))}
                for i, s, d1, d2, q in rows
            ],
            "info": {"pT2Hat": pt * pt},
        }

    def nextBatch(self, n: int):  # noqa: N802 - Pythia's name
        import awkward as ak

        return ak.Array([self._event() for _ in range(n)])


@needs_fastjet
def test_generate_pipeline_with_toy_pythia(tmp_path, monkeypatch):
    import jets.generate as gen

    monkeypatch.setattr(gen, "make_pythia", lambda process, seed: _ToyPythia(process, seed))
    monkeypatch.setattr(gen, "require_generators", lambda: (None, None, __import__("awkward")))
    monkeypatch.setattr(gen, "BATCH_EVENTS", 3)
    path = gen.generate(tmp_path / "out", n_jets=10, seed=3, chunk_jets=2, command="python -m jets.generate test")
    arr = read_arrays(path)
    assert (arr["label"] == 1).sum() == 5 == (arr["label"] == 0).sum()
    counts = np.diff(arr["offsets"])
    assert set(counts[arr["label"] == 1].tolist()) == {18} and set(counts[arr["label"] == 0].tolist()) == {6}
    np.testing.assert_allclose(np.add.reduceat(arr["constituents"], arr["offsets"][:-1]), arr["jet"], rtol=1e-5)
    notes = (tmp_path / "out" / "SAMPLE.md").read_text()
    assert "python -m jets.generate test" in notes and "| top | 5 |" in notes
    again = gen.generate(tmp_path / "again", n_jets=10, seed=3, chunk_jets=2)
    np.testing.assert_array_equal(read_arrays(again)["constituents"], arr["constituents"])
    capped = read_arrays(gen.generate(tmp_path / "capped", n_jets=10, seed=3, chunk_jets=2, max_constituents=4))
    assert np.diff(capped["offsets"]).max() == 4
    np.testing.assert_array_equal(capped["jet"], arr["jet"])
