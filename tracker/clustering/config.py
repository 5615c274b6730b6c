"""The clustering trial file: ``pipeline`` (which stages, chained in one trial), ``data`` (the tracking data
section), ``model`` (per-stage hyperparameters), ``train`` (optimiser and loss weights), ``eval`` (DBSCAN scan,
track metrics, rotated test events). Frozen pydantic sections, unknown keys are errors naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from equitrack.config import Section, TrialSections
from tracker.clustering.models import STAGES, StageConfigError, resolve_stage
from tracker.data.config import DataConfig

Stage = Literal["noise_classifier", "metric_learning", "edge_classifier", "object_condensation"]
#: (section, key) pairs that change no result (left out of config ids and checkpoint hashes)
RESULT_NEUTRAL_KEYS: tuple[tuple[str, str], ...] = (("train", "checkpoint_every"),)


class PipelineConfig(Section):
    """Which stages run, in pipeline order, and how one stage's output feeds the next."""

    stages: list[Stage] = Field(
        default_factory=lambda: ["metric_learning", "edge_classifier", "object_condensation"]
    )
    noise_threshold: float = Field(0.5, gt=0, lt=1)  # hits with sigmoid(noise logit) below it are dropped
    max_radius: float = Field(1.0, gt=0)  # radius graph in the metric-learning embedding
    max_neighbours: int = Field(32, ge=1)
    ec_threshold: float = Field(
        0.5, gt=0, lt=1
    )  # edges scored below it are pruned before object condensation

    @field_validator("stages")
    @classmethod
    def _order(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"pipeline.stages must name at least one of {', '.join(STAGES)}")
        if len(set(v)) != len(v):
            raise ValueError(f"pipeline.stages lists a stage twice (got {v})")
        if v != sorted(v, key=STAGES.index):
            raise ValueError(f"pipeline.stages must be in pipeline order {', '.join(STAGES)} (got {v})")
        return v


class ModelConfig(Section):
    """``name``: ``plain`` (no stage equivariant), ``so2`` (every stage SO(2)-equivariant) or ``mixed`` (the stages
    listed in ``equivariant``); ``preset``: a size for every stage; per-stage mappings override all of it
    (``model.object_condensation.oc_dim``, ``model.edge_classifier.equivariant``)."""

    name: Literal["plain", "so2", "mixed"] = "plain"
    preset: Literal["tiny", "small", "thesis"] | None = None
    equivariant: list[Stage] | None = None  # with name mixed: the SO(2)-equivariant stages
    noise_classifier: dict[str, Any] = Field(default_factory=dict)
    metric_learning: dict[str, Any] = Field(default_factory=dict)
    edge_classifier: dict[str, Any] = Field(default_factory=dict)
    object_condensation: dict[str, Any] = Field(default_factory=dict)

    def stage_hparams(self, stage: str) -> dict[str, Any]:
        """The hyperparameters ``build_stage(stage, ...)`` gets (validated by the stage registry)."""
        eq = self.name == "so2" or (self.name == "mixed" and stage in (self.equivariant or []))
        hp: dict[str, Any] = {"equivariant": eq}
        if self.preset is not None:
            hp["preset"] = self.preset
        hp.update(getattr(self, stage))
        return hp

    @model_validator(mode="after")
    def _stages_resolve(self) -> ModelConfig:
        if (self.name == "mixed") != (self.equivariant is not None):
            raise ValueError(
                f"model.equivariant (the equivariant stages) goes with model.name mixed, and mixed needs "
                f"it (got name {self.name!r}, equivariant {self.equivariant!r})"
            )
        for stage in STAGES:
            try:
                resolve_stage(stage, **self.stage_hparams(stage))
            except StageConfigError as err:
                raise ValueError(str(err)) from None
        return self


class TrainConfig(Section):
    """Adam per stage, one event per step; the loss weights of every stage."""

    epochs: int = Field(20, ge=1)  # per stage
    stage_epochs: dict[Stage, int] = Field(default_factory=dict)  # per-stage override of epochs
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    random_rotation: bool = False  # augmentation: every training event rotated by a random angle each epoch
    checkpoint_every: int = Field(
        1, ge=1
    )  # write the resumable checkpoint every n-th epoch (and at each stage's end)
    # noise classifier: weight of the noise class ("auto": #real / #noise hits of the training events)
    nc_noise_weight: float | Literal["auto"] = "auto"
    # metric learning: L_att + ml_rep_weight · L_rep, hinge radius r_emb, attraction for particles above ml_pt_min
    ml_rep_weight: float = Field(1.0, ge=0)
    ml_r_emb: float = Field(1.0, gt=0)
    ml_pt_min: float = Field(0.9, ge=0)
    # edge classifier: BCE weight of true edges (None: 1)
    ec_pos_weight: float | None = Field(None, gt=0)
    # object condensation (Kieseler): loss weights and the minimal charge q_min
    oc_attr_weight: float = Field(1.0, ge=0)
    oc_rep_weight: float = Field(1.0, ge=0)
    oc_coward_weight: float = Field(1.0, ge=0)
    oc_bkg_weight: float = Field(1.0, ge=0)
    oc_q_min: float = Field(0.01, gt=0)

    @field_validator("stage_epochs")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"train.stage_epochs must be >= 1 per stage (got {bad})")
        return v

    def epochs_of(self, stage: str) -> int:
        return int(self.stage_epochs.get(stage, self.epochs))


class EvalConfig(Section):
    """DBSCAN scan on validation, the track metrics' particle cut, rotated test events."""

    eps: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4, 0.8])
    min_samples: list[int] = Field(default_factory=lambda: [1, 2, 3])
    scan_metric: Literal["track_dm_eff", "track_perfect_eff", "trackml_score"] = "track_dm_eff"
    pt_min: float = Field(0.9, ge=0)  # track efficiencies count particles above this pT (GeV)
    min_hits: int = Field(3, ge=1)  # particles and track candidates need this many hits
    rotations_deg: list[float] = Field(
        default_factory=list
    )  # test events also evaluated rotated by these angles

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v or any(e <= 0 for e in v):
            raise ValueError(f"eval.eps must be a non-empty list of positive numbers (got {v})")
        return v

    @field_validator("min_samples")
    @classmethod
    def _min_samples(cls, v: list[int]) -> list[int]:
        if not v or any(m < 1 for m in v):
            raise ValueError(f"eval.min_samples must be a non-empty list of integers >= 1 (got {v})")
        return v


class ClusteringTrialConfig(TrialSections):
    """One clustering trial (``task: clustering``); ``model.name`` defaults to ``plain``."""

    model_name_required: ClassVar[bool] = False

    pipeline: PipelineConfig = PipelineConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


def trial_from_dict(raw: Any, *, source: str = "<dict>") -> ClusteringTrialConfig:
    """Validate a plain dict as a clustering trial; :class:`ConfigError` naming ``source`` on failure."""
    return ClusteringTrialConfig.from_dict(raw, source=source)


def load_trial(path: str | Path) -> ClusteringTrialConfig:
    """Read and validate a clustering trial YAML file."""
    return ClusteringTrialConfig.load(path)
