"""Reader and writer of the shipped generated jet sample (``resources/generated/jets.npz``).

The sample is written by ``python -m jets.generate`` (Pythia 8 + FastJet, see ``SAMPLE.md`` next to it) as one
``np.savez_compressed`` file with four arrays:

- ``constituents`` float32 [M, 4]: (E, px, py, pz) in GeV of every jet's constituents, each jet's contiguous and
  sorted by transverse momentum, highest first;
- ``offsets`` int64 [n_jets + 1]: jet ``i`` owns ``constituents[offsets[i]:offsets[i + 1]]``; starts at 0, ends
  at M, never decreases, every jet has at least one constituent;
- ``label`` int8 [n_jets]: 1 = top jet, 0 = QCD jet;
- ``jet`` float32 [n_jets, 4]: the jet four-momentum (E, px, py, pz) from the clustering.

The ragged layout keeps the file small (no padding on disk); :func:`load_generated` pads to the in-memory jet
set of the ``jets`` package (``p4`` [n, n_max, 4], ``mask``, ``label``). Every defect of a file (missing,
truncated, not an npz, a missing array, a wrong shape or dtype, inconsistent offsets, non-finite values) is one
:class:`GeneratedFormatError` naming the file and what was expected.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: the shipped sample (made by ``python -m jets.generate``; command and versions in ``SAMPLE.md`` beside it)
SAMPLE_PATH = Path(__file__).resolve().parent / "resources" / "generated" / "jets.npz"
#: array names of the file format, in the order the module docstring describes them
ARRAYS = ("constituents", "offsets", "label", "jet")
_EXPECTED = (
    "an npz with constituents float32 [M, 4], offsets int64 [n_jets + 1], label int8 [n_jets] (0/1), "
    "jet float32 [n_jets, 4]"
)


class GeneratedFormatError(ValueError):
    """A generated-sample file that cannot be read; the message names the file and what was expected."""


def pack_constituents(jets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-jet constituent arrays ([n_i, 4] each) into the file's ``constituents`` and ``offsets``."""
    counts = np.array([len(j) for j in jets], dtype=np.int64)
    offsets = np.zeros(len(jets) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    if not jets:
        return np.zeros((0, 4), dtype=np.float32), offsets
    constituents = np.concatenate([np.asarray(j, dtype=np.float32).reshape(-1, 4) for j in jets])
    return constituents, offsets


def _validate(where: str, arr: dict[str, np.ndarray]) -> None:
    """Raise :class:`GeneratedFormatError` unless the four arrays form a consistent jet set."""
    const, offsets, label, jet = (arr[k] for k in ARRAYS)
    if const.ndim != 2 or const.shape[1] != 4 or not np.issubdtype(const.dtype, np.floating):
        raise GeneratedFormatError(
            f"{where}: constituents has shape {const.shape} dtype {const.dtype}, expected float [M, 4] (E, px, py, pz)"
        )
    if offsets.ndim != 1 or offsets.shape[0] < 1 or not np.issubdtype(offsets.dtype, np.integer):
        raise GeneratedFormatError(
            f"{where}: offsets has shape {offsets.shape} dtype {offsets.dtype}, expected integer [n_jets + 1]"
        )
    n = offsets.shape[0] - 1
    if label.shape != (n,) or not np.issubdtype(label.dtype, np.integer):
        raise GeneratedFormatError(
            f"{where}: label has shape {label.shape} dtype {label.dtype}, expected integer [{n}] (n_jets from offsets)"
        )
    if jet.shape != (n, 4) or not np.issubdtype(jet.dtype, np.floating):
        raise GeneratedFormatError(
            f"{where}: jet has shape {jet.shape} dtype {jet.dtype}, expected float [{n}, 4] (n_jets from offsets)"
        )
    if offsets[0] != 0 or offsets[-1] != const.shape[0]:
        raise GeneratedFormatError(
            f"{where}: offsets run from {offsets[0]} to {offsets[-1]}, expected 0 to {const.shape[0]} "
            "(the number of constituents)"
        )
    counts = np.diff(offsets)
    if n and counts.min() < 1:
        bad = int(np.argmax(counts < 1))
        raise GeneratedFormatError(
            f"{where}: offsets give jet {bad} {int(counts[bad])} constituents, expected offsets strictly increasing "
            "(every jet has at least one constituent)"
        )
    if n and not np.isin(label, (0, 1)).all():
        raise GeneratedFormatError(f"{where}: label has values {np.unique(label)[:10].tolist()}, expected 0 or 1")
    for name, a in (("constituents", const), ("jet", jet)):
        if not np.isfinite(a).all():
            raise GeneratedFormatError(f"{where}: {name} contains NaN or infinite values, expected finite GeV")
    if const.shape[0] > 1:
        pt = np.hypot(const[:, 1].astype(np.float64), const[:, 2].astype(np.float64))
        rise = pt[1:] - pt[:-1] > 1e-6 * np.maximum(pt[1:], 1.0)
        rise[offsets[1:-1] - 1] = False  # a new jet may start with a higher pT
        if rise.any():
            bad = int(np.searchsorted(offsets, int(np.argmax(rise)) + 1, side="right") - 1)
            raise GeneratedFormatError(f"{where}: jet {bad}'s constituents are not sorted by pT, highest first")


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The four validated arrays of a generated-sample file (see the module docstring)."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise GeneratedFormatError(f"{path}: a single .npy array, expected {_EXPECTED}")
        with f:
            missing = [k for k in ARRAYS if k not in f.files]
            if missing:
                raise GeneratedFormatError(f"{path}: missing array(s) {missing}; expected {_EXPECTED}; found {f.files}")
            arr = {k: np.asarray(f[k]) for k in ARRAYS}
    except FileNotFoundError:
        raise GeneratedFormatError(f"{path}: no such file; expected {_EXPECTED}") from None
    except GeneratedFormatError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise GeneratedFormatError(
            f"{path}: not a readable npz file ({type(err).__name__}: {err}); expected {_EXPECTED}"
        ) from None
    _validate(str(path), arr)
    return arr


def load_generated(
    path: str | Path = SAMPLE_PATH, *, max_constituents: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The jet set of a generated-sample file: ``p4`` float32 [n, n_max, 4], ``mask`` bool [n, n_max], ``label`` int8.

    ``n_max`` is the largest multiplicity in the file, or ``max_constituents`` when that is smaller (each jet
    then keeps its leading ``max_constituents`` constituents by pT). Padding is zero and masked out.
    """
    if max_constituents is not None and max_constituents < 1:
        raise ValueError(f"max_constituents={max_constituents!r}: expected a positive integer or None")
    arr = read_arrays(path)
    const, offsets = arr["constituents"], arr["offsets"].astype(np.int64)
    n = offsets.shape[0] - 1
    counts = np.diff(offsets)
    n_max = int(counts.max()) if n else 0
    if max_constituents is not None:
        n_max = min(n_max, int(max_constituents))
    jet_of = np.repeat(np.arange(n), counts)
    slot = np.arange(const.shape[0]) - np.repeat(offsets[:-1], counts)
    keep = slot < n_max
    p4 = np.zeros((n, n_max, 4), dtype=np.float32)
    mask = np.zeros((n, n_max), dtype=bool)
    p4[jet_of[keep], slot[keep]] = const[keep]
    mask[jet_of[keep], slot[keep]] = True
    return p4, mask, arr["label"].astype(np.int8)


def write_generated(
    path: str | Path, constituents: np.ndarray, offsets: np.ndarray, label: np.ndarray, jet: np.ndarray
) -> Path:
    """Validate and write a generated-sample file (``np.savez_compressed``, float32/int64/int8); return its path.

    Raises :class:`GeneratedFormatError` (naming ``path``) before writing anything when the arrays are
    inconsistent, so a bad sample never reaches disk.
    """
    path = Path(path)
    arr = {
        "constituents": np.ascontiguousarray(constituents, dtype=np.float32),
        "offsets": np.ascontiguousarray(offsets, dtype=np.int64),
        "label": np.ascontiguousarray(label, dtype=np.int8),
        "jet": np.ascontiguousarray(jet, dtype=np.float32),
    }
    _validate(str(path), arr)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arr)
    tmp.replace(path)
    return path
