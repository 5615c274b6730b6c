"""The trial file: one configuration of data, model, training and evaluation.

Validated once at the boundary (a trial YAML, or a grid cell resolved by ``sweeps``) with pydantic;
everything inside ``tracker`` receives these frozen, typed objects. Unknown keys are errors that name
the key and list the accepted ones.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

# re-exported: tracker's trial code and tests import these from here
from equitrack.config import (  # noqa: F401
    ConfigError,
    ModelSection,
    Section,
    TrialSections,
    flatten,
    format_validation_error,
    read_yaml,
    yaml_text,
)
from tracker.data.config import DataConfig, SplitSizes  # noqa: F401  (the data section lives in the data layer)

#: (section, key) pairs that change no result: left out of checkpoint hashes and sweep config ids, so that
#: setting them (or a release adding them) neither invalidates checkpoints nor re-runs finished cells
RESULT_NEUTRAL_KEYS: tuple[tuple[str, str], ...] = (("train", "checkpoint_every"),)
#: keys added after sweeps existed, with their defaults: left out of config ids and checkpoint hashes while they hold
#: them (equitrack.config.identity), so existing sweeps keep their finished cells and checkpoints still resume
ADDED_DEFAULTS: dict[tuple[str, str], Any] = {("data", "noise_hits"): False, ("model", "fused"): False}


class ModelConfig(ModelSection):
    """Model name plus its hyperparameters; ``tracker.models.build_model`` validates the latter."""

    name: str = "euclidnet"


class TrainConfig(Section):
    """Optimisation: the paper's protocol by default (SCIENCE.md §5)."""

    epochs: int = Field(200, ge=1)
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    lr_step: int = Field(100, ge=1)  # epochs between lr decays
    lr_gamma: float = Field(0.3, gt=0, le=1)
    patience: int | None = Field(50, ge=1)  # early stopping; None disables it
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    batch_size: int = Field(1, ge=1)
    pos_weight: float | Literal["auto"] | None = None
    grad_clip: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    train_rotation_deg: float = 0.0  # the whole training set rotated by this angle (paper fig. 2)
    random_rotation: bool = False  # augmentation: a random angle per graph and epoch
    fraction: float = Field(1.0, gt=0, le=1)  # share of the training split used (data efficiency)
    seed: int = 0
    deterministic: bool = True
    # write the resumable checkpoint every n-th epoch (and always at the last epoch / an early stop); results do
    # not depend on it, a crash resumes from the last checkpoint written
    checkpoint_every: int = Field(1, ge=1)


def _default_rotations() -> list[float]:
    return [float(a) for a in range(0, 181, 20)]


class EvalConfig(Section):
    """Evaluation of the best model on the test split."""

    rotations_deg: list[float] = Field(default_factory=_default_rotations)
    threshold: Literal["tpr_tnr", "max_f1"] = "tpr_tnr"
    track_metrics: bool = True
    equivariance: bool = True
    timing: bool = True
    timing_runs: int = Field(10, ge=1)


class TrialConfig(TrialSections):
    """One trial: the sections a grid cell resolves to."""

    model_examples: ClassVar[str] = "euclidnet, interaction_network"

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


#: ``trial_from_dict(raw, *, source)``: validate a plain dict as a trial (:class:`ConfigError` naming ``source``)
trial_from_dict = TrialConfig.from_dict
#: ``load_trial(path)``: read and validate a trial YAML file
load_trial = TrialConfig.load
