"""Reader of the Top Quark Tagging Reference Dataset (Kasieczka, Plehn et al. 2019; Zenodo record 2603256).

The dataset is three files, ``train.h5``, ``val.h5`` and ``test.h5`` (1.2 M, 400 k, 400 k jets), each a pandas
HDF5 store with one frame under the key ``table``: per jet the columns ``E_i, PX_i, PY_i, PZ_i`` (GeV) for the
up to 200 leading constituents ``i = 0..199`` (zero padded, sorted by pT), ``is_signal_new`` (1 = top,
0 = QCD), and truth columns (``truthE``, ``truthPX``, …, ``ttv``) that are not read here. Reading needs
PyTables (``tables`` on PyPI), a dependency of the package.

Every defect (missing file, truncated or non-HDF5 file, no ``table`` key, a missing column, NaN or infinite
values, labels other than 0/1, fewer rows than asked for) is one :class:`ToptagFormatError` naming the file
and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: constituent slots of the format, the HDF5 key and the label column
N_CONSTITUENTS = 200
KEY = "table"
LABEL = "is_signal_new"
FILES = {"train": "train.h5", "val": "val.h5", "test": "test.h5"}
_FAMILIES = ("E", "PX", "PY", "PZ")
_EXPECTED = (
    f"a pandas HDF5 store with key {KEY!r} holding columns E_i, PX_i, PY_i, PZ_i for i < {N_CONSTITUENTS} and "
    f"{LABEL} (the Top Quark Tagging Reference Dataset layout)"
)


class ToptagFormatError(ValueError):
    """A top-tagging file that cannot be read; the message names the file and what was expected."""


def columns() -> list[str]:
    """The constituent columns in file order of the families: E_0..E_199, PX_0.., PY_0.., PZ_0.."""
    return [f"{f}_{i}" for f in _FAMILIES for i in range(N_CONSTITUENTS)]


def _reason(err: Exception) -> str:
    """The innermost line of an HDF5 back trace (e.g. "truncated file: eof = ...") or the message's last line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    end = "End of HDF5 error back trace"
    if end in lines and lines.index(end) > 0:
        return lines[lines.index(end) - 1]
    return lines[-1] if lines else ""


def _read_frame(path: Path, n_jets: int | None) -> pd.DataFrame:
    if not path.is_file():
        raise ToptagFormatError(f"{path}: no such file; expected {_EXPECTED}")
    try:
        frame = pd.read_hdf(path, key=KEY, stop=n_jets)
    except ImportError as err:  # PyTables missing: an install problem, said as such
        raise ImportError(f"reading {path} needs PyTables: pip install tables ({err})") from None
    except KeyError as err:
        raise ToptagFormatError(f"{path}: no key {KEY!r} in the HDF5 file ({err}); expected {_EXPECTED}") from None
    except Exception as err:  # noqa: BLE001 - PyTables/HDF5 raise many types for a truncated or foreign file
        raise ToptagFormatError(
            f"{path}: not a readable HDF5 store ({type(err).__name__}: {_reason(err)}); expected {_EXPECTED}"
        ) from None
    if not isinstance(frame, pd.DataFrame):
        raise ToptagFormatError(f"{path}: key {KEY!r} holds a {type(frame).__name__}, expected {_EXPECTED}")
    return frame


def read_toptag(
    path: str | Path, *, n_jets: int | None = None, max_constituents: int = N_CONSTITUENTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n_jets`` jets of one file (all when None) as ``(p4, mask, label)``.

    ``p4`` float32 [n, max_constituents, 4] = (E, px, py, pz) sorted by pT descending (as in the files; re-sorted
    here, stable), zero padded; ``mask`` bool (a constituent is present when E > 0); ``label`` int8 (1 = top).
    """
    path = Path(path).expanduser()
    if not 1 <= max_constituents <= N_CONSTITUENTS:
        raise ValueError(f"max_constituents={max_constituents!r}: expected 1..{N_CONSTITUENTS}")
    frame = _read_frame(path, n_jets)
    wanted = [*columns(), LABEL]
    present = set(map(str, frame.columns))
    missing = [c for c in wanted if c not in present]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ToptagFormatError(f"{path}: missing column(s) {shown}; expected {_EXPECTED}")
    if n_jets is not None and len(frame) < n_jets:
        raise ToptagFormatError(f"{path}: {len(frame)} jets, but {n_jets} were asked for (data.jets)")
    try:
        values = frame[columns()].to_numpy(dtype=np.float64)
        label_raw = frame[LABEL].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ToptagFormatError(f"{path}: non-numeric constituent or label column ({err}); expected {_EXPECTED}") \
            from None
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ToptagFormatError(
            f"{path}: {int(bad.sum())} NaN or infinite value(s), first in column {columns()[col]} of jet {row}; "
            "expected finite momenta in GeV (zero padding)"
        )
    if not np.isin(label_raw, (0.0, 1.0)).all():
        raise ToptagFormatError(
            f"{path}: column {LABEL} has values {np.unique(label_raw)[:10].tolist()}, expected 0 (QCD) or 1 (top)"
        )
    n = len(frame)
    p4 = values.reshape(n, 4, N_CONSTITUENTS).transpose(0, 2, 1)  # [n, 200, 4] in (E, px, py, pz)
    pt = np.hypot(p4[..., 1], p4[..., 2])
    present_c = p4[..., 0] > 0
    order = np.argsort(np.where(present_c, -pt, np.inf), axis=1, kind="stable")[:, :max_constituents]
    p4 = np.take_along_axis(p4, order[..., None], axis=1)
    mask = np.take_along_axis(present_c, order, axis=1)
    p4 = np.where(mask[..., None], p4, 0.0).astype(np.float32)
    return p4, mask, label_raw.astype(np.int8)


__all__ = ["FILES", "KEY", "LABEL", "N_CONSTITUENTS", "ToptagFormatError", "columns", "read_toptag"]
