"""The jets trial file: one configuration of data, model, training and evaluation for top tagging.

Validated once at the boundary (a trial YAML, or a grid cell resolved by ``sweeps``) with pydantic, like
:mod:`tracker.train.config`; everything inside ``jets`` receives these frozen, typed objects. Unknown keys are
errors that name the key. Config keys and metric names are documented in docs/jets.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from equitrack.config import ConfigError, ModelSection, Section, TrialSections

#: (section, key) pairs that change no result: left out of checkpoint hashes (and sweep config ids)
RESULT_NEUTRAL_KEYS: tuple[tuple[str, str], ...] = (("train", "checkpoint_every"),)

Axis = Literal["x", "y", "z"]


class JetCounts(Section):
    """Number of jets in each split; the splits are disjoint."""

    train: int = Field(10_000, ge=1)
    val: int = Field(2_000, ge=1)
    test: int = Field(5_000, ge=1)


class DataConfig(Section):
    """Where the jets come from (the dataset cache key hashes all of it, and the input files)."""

    #: ``generated``: the shipped Pythia 8 sample (or the generated npz at ``path``); ``toptag``: the Top Quark
    #: Tagging Reference Dataset, ``path`` = the folder holding its train.h5, val.h5 and test.h5
    source: Literal["generated", "toptag"] = "generated"
    path: str | None = None
    jets: JetCounts = JetCounts()
    #: constituents kept per jet (the leading ones by pT); the rest are dropped
    max_constituents: int = Field(100, ge=1, le=200)
    #: the seeded split of a generated sample (toptag reads the first rows of each of its own files)
    seed: int = 0

    @model_validator(mode="after")
    def _toptag_needs_path(self) -> DataConfig:
        if self.source == "toptag" and not self.path:
            raise ValueError("data.path is required for source 'toptag' (the folder with train.h5, val.h5, test.h5)")
        return self


class ModelConfig(ModelSection):
    """Model name plus its hyperparameters; ``jets.models.build_model`` validates the latter."""

    name: str = "lorentznet"


class TrainConfig(Section):
    """Optimisation: Adam, a per-epoch learning-rate schedule, early stopping on the validation loss."""

    epochs: int = Field(35, ge=1)
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    #: ``cosine``: CosineAnnealingLR over ``epochs`` (to 0 after the last); ``step``: ×``lr_gamma`` every
    #: ``lr_step`` epochs; ``constant``: no schedule
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    lr_step: int = Field(10, ge=1)
    lr_gamma: float = Field(0.5, gt=0, le=1)
    patience: int | None = Field(10, ge=1)  # epochs without a better val_loss before stopping; None: never
    batch_size: int = Field(32, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: the whole training (and validation) set boosted by this β along ``boost_axis`` (a boosted frame)
    boost_beta: float = Field(0.0, gt=-1, lt=1)
    boost_axis: Axis = "x"
    #: augmentation: each jet boosted every epoch by |β| uniform in [0, boost_augment] along a random direction
    #: (isotropic); None or 0: off
    boost_augment: float | None = Field(None, ge=0, lt=1)
    fraction: float = Field(1.0, gt=0, le=1)  # share of the training split used (data efficiency), class-balanced
    seed: int = 0
    deterministic: bool = True
    #: write the resumable checkpoint every n-th epoch (and always at the last one); results do not depend on it
    checkpoint_every: int = Field(1, ge=1)


def _default_betas() -> list[float]:
    return [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]


def beta_name(beta: float) -> str:
    """The metric-name suffix of a boost: ``round(β·100)`` with three digits (0.3 -> ``030``)."""
    return f"{round(beta * 100):03d}"


class EvalConfig(Section):
    """Evaluation of the best epoch's model on the test split."""

    #: the test split boosted by each β along ``boost_axis``: acc_boost_*, auc_boost_*, boost_spread
    boosts_beta: list[float] = Field(default_factory=_default_betas)
    #: ``x`` (transverse to the beam) is the boost that moves a jet out of the frame a tagger learned
    boost_axis: Axis = "x"
    timing: bool = True  # inference_ms_per_batch100
    timing_runs: int = Field(5, ge=1)

    @field_validator("boosts_beta")
    @classmethod
    def _betas(cls, v: list[float]) -> list[float]:
        for b in v:
            if not 0 <= b < 1:
                raise ValueError(f"boost β={b!r} outside [0, 1)")
        names = [beta_name(b) for b in v]
        if len(set(names)) != len(names):
            raise ValueError(f"betas {v} give repeated metric names {names} (they are named by round(β·100))")
        return v


class JetsTrialConfig(TrialSections):
    """One jets trial: the sections a grid cell resolves to."""

    model_examples: ClassVar[str] = "lorentznet, pfn, mlp"

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


#: ``trial_from_dict(raw, *, source)``: validate a plain dict as a jets trial (:class:`ConfigError` naming ``source``)
trial_from_dict = JetsTrialConfig.from_dict
#: ``load_trial(path)``: read and validate a jets trial YAML file
load_trial = JetsTrialConfig.load


__all__ = [
    "RESULT_NEUTRAL_KEYS",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "JetCounts",
    "JetsTrialConfig",
    "ModelConfig",
    "TrainConfig",
    "beta_name",
    "load_trial",
    "trial_from_dict",
]
