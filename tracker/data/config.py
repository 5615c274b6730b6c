"""The data section of a trial: where the hit graphs come from and how they are built.

It lives in the data layer (``tracker.data.dataset`` builds datasets from it without importing the training
layer); ``tracker.train.config.TrialConfig`` embeds it as ``data``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from equitrack.config import Section


class SplitSizes(Section):
    """Number of events (or graphs) in each split; the splits are disjoint."""

    train: int = Field(8, ge=1)
    val: int = Field(2, ge=1)
    test: int = Field(2, ge=1)


class DataConfig(Section):
    """Where the hit graphs come from and how they are built (the dataset cache key hashes all of it)."""

    source: Literal["simulated", "trackml", "hitgraphs"] = "simulated"
    path: str | None = None  # trackml: folder/zip of events; hitgraphs: folder of npz; simulated: unused
    events: SplitSizes = SplitSizes()
    pileup: float = Field(200.0, gt=0)  # simulated only
    noise_fraction: float = Field(0.15, ge=0, lt=1)  # simulated only
    pt_min: float = Field(1.5, gt=0)
    phi_slope_max: float | None = None  # None: the recommended cut for pt_min (SCIENCE.md §3)
    z0_max: float | None = None  # None: the recommended cut for pt_min
    endcaps: bool = True
    remove_intersecting: bool = True
    remove_duplicates: bool = True  # keep one hit per particle and layer (the innermost), as the reference
    dedup_triangles: bool = True  # un-label duplicate barrel→endcap segments of one particle (reference)
    noise_hits: bool = False  # keep noise hits (pid 0) as nodes (the clustering task's noise classifier)
    seed: int = 0
    # symmetry-breaking knobs of the simulation (default off)
    field_phi_modulation: float = 0.0
    misalignment_mm: float = 0.0
    dead_module_fraction: float = 0.0
