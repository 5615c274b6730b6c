"""Per-epoch checkpoints of any task's trial: one file ``state.pt`` inside ``workdir/checkpoint``, replaced
atomically, with the random states a resumed trial needs to continue as if uninterrupted.

The file holds only tensors and plain Python containers, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"


def checkpoint_path(workdir: Path) -> Path:
    return Path(workdir) / CHECKPOINT_DIR / CHECKPOINT_FILE


def save_checkpoint(workdir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``workdir/checkpoint/state.pt`` via a temporary file and ``os.replace``."""
    path = checkpoint_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path.parent


def checkpoint_due(epoch: int, *, every: int, finished: bool) -> bool:
    """Whether ``epoch`` (1-based) writes a checkpoint: every ``every``-th epoch and the last one (``finished``:
    the final epoch or an early stop), so a finished trial always ends with a finished checkpoint."""
    return finished or epoch % every == 0


def trainer_state(*, config_hash: str, epoch: int, finished: bool, model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, scheduler: Any, early_stopping: dict[str, Any],
                  rng: dict[str, Any], history: list[dict[str, float]], train_seconds: float) -> dict[str, Any]:
    """The checkpoint of a trial (solo or bundle member) after ``epoch``, in the one format both write."""
    return {
        "format": 1,
        "config_hash": config_hash,
        "epoch": epoch,
        "finished": finished,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "early_stopping": early_stopping,
        "rng": rng,
        "history": history,
        "train_seconds": train_seconds,
    }


def load_checkpoint(workdir: Path) -> dict[str, Any] | None:
    """The checkpoint of ``workdir``, or ``None`` when there is none."""
    path = checkpoint_path(workdir)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state the loop depends on, as tensors and plain containers."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "data": generator.get_state(),
        "numpy_key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
        "numpy_pos": int(np_state["state"]["pos"]),
        "numpy_has_gauss": int(np_state["has_gauss"]),
        "numpy_gauss": float(np_state["gauss"]),
        "python": [py_version, list(py_internal), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": state["numpy_key"].numpy().astype(np.uint32), "pos": state["numpy_pos"]},
            "has_gauss": state["numpy_has_gauss"],
            "gauss": state["numpy_gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
