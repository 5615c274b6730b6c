"""equitrack.registry: the one model registry behind tracker.models, jets.models and tracker.clustering.models."""

from __future__ import annotations

import pytest
from torch import nn

import jets.models
import tracker.clustering.models
import tracker.models
from equitrack.registry import BOOL, Choice, Float, Int, ModelRegistry, ModelSpec, count_parameters


class _Tiny(nn.Module):
    def __init__(self, *, hidden: int, act: str, scale: float, bias: bool, extra: int | None) -> None:
        super().__init__()
        self.hp = {"hidden": hidden, "act": act, "scale": scale, "bias": bias, "extra": extra}
        self.lin = nn.Linear(2, hidden, bias=bias)


class _Error(ValueError):
    pass


def _registry(**kwargs) -> ModelRegistry:
    spec = ModelSpec(
        _Tiny,
        {"hidden": 4, "act": "relu", "scale": 1.0, "bias": True, "extra": None},
        {"small": {"hidden": 3}, "big": {"hidden": 8, "act": "tanh"}},
        {"small": 9, "big": 24},
    )
    constraints = {
        "hidden": Int(1),
        "act": Choice(("relu", "tanh")),
        "scale": Float(0.0, below=2.0),
        "bias": BOOL,
        "extra": Int(0),
    }
    return ModelRegistry({"tiny": spec}, constraints, error=_Error, **kwargs)


def test_presets_then_explicit_values_and_counts():
    reg = _registry()
    assert reg.resolve("tiny", preset="big", act="relu") == {
        "hidden": 8,
        "act": "relu",
        "scale": 1.0,
        "bias": True,
        "extra": None,
    }
    assert reg.resolve("tiny", scale=1)["scale"] == 1.0 and isinstance(
        reg.resolve("tiny", scale=1)["scale"], float
    )
    for preset, count in reg.specs["tiny"].preset_counts.items():
        model = reg.build("tiny", preset=preset)
        assert model.preset == preset and count_parameters(model) == count
    model = reg.build("tiny", bias=False)
    model.lin.weight.requires_grad_(False)
    assert count_parameters(model) == 0 and count_parameters(model, trainable_only=False) == 8


@pytest.mark.parametrize(
    ("hparams", "message"),
    [
        ({"hidden": 0}, "model 'tiny': hyperparameter hidden=0: expected an integer >= 1"),
        ({"hidden": True}, "hidden=True: expected an integer >= 1"),
        ({"act": "gelu"}, "act='gelu': expected one of ['relu', 'tanh']"),
        ({"scale": 2.0}, "scale=2.0: expected a number in [0, 2)"),
        ({"scale": -1}, "scale=-1: expected a number >= 0.0"),
        ({"bias": 1}, "bias=1: expected true or false"),
        (
            {"widht": 3},
            "model 'tiny': unknown hyperparameter(s) ['widht']; accepted: hidden, act, scale, bias, extra, preset",
        ),
        ({"preset": "huge"}, "model 'tiny': unknown preset 'huge'; accepted: small, big"),
    ],
)
def test_errors_name_the_value_and_list_what_is_accepted(hparams, message):
    with pytest.raises(_Error) as err:
        _registry().resolve("tiny", **hparams)
    assert message in str(err.value)


def test_unknown_name_labels_and_cross_checks():
    def no_big_tanh(name, hp):
        if hp["hidden"] > 4 and hp["act"] == "tanh":
            raise _Error(f"{name}: tanh only up to hidden 4")

    reg = _registry(
        noun="stage", label="model.{name}", where="model.{name}.{key}={value!r}", check=no_big_tanh
    )
    with pytest.raises(_Error, match=r"^unknown stage 'mlp'; accepted: tiny$"):
        reg.build("mlp")
    with pytest.raises(_Error, match=r"^model\.tiny\.hidden=0: expected an integer >= 1$"):
        reg.resolve("tiny", hidden=0)
    with pytest.raises(_Error, match=r"^model\.tiny: unknown preset"):
        reg.resolve("tiny", preset="huge")
    with pytest.raises(_Error, match="tanh only up to hidden 4"):
        reg.resolve("tiny", preset="big")
    # None stays allowed where the default is None, and is checked where it is not
    assert reg.resolve("tiny", extra=None)["extra"] is None
    with pytest.raises(_Error, match="hidden=None: expected an integer"):
        reg.resolve("tiny", hidden=None)


def test_describe_lists_defaults_constraints_and_presets():
    text = _registry().describe("tiny")
    assert text.splitlines()[0] == "model tiny: _Tiny; presets: small, big"
    assert "  hidden = 4 (int >= 1); small=3, big=8" in text
    assert (
        "  scale = 1.0 (float in [0, 2))" in text
        and "  act = 'relu' (one of ['relu', 'tanh']); big='tanh'" in text
    )


def test_the_three_tasks_are_registries_with_their_own_errors():
    for module, registry, error in (
        (tracker.models, tracker.models.MODELS, tracker.models.ModelConfigError),
        (jets.models, jets.models.MODELS, jets.models.ModelConfigError),
        (
            tracker.clustering.models,
            tracker.clustering.models.STAGE_REGISTRY,
            tracker.clustering.models.StageConfigError,
        ),
    ):
        assert (
            isinstance(registry, ModelRegistry)
            and registry.specs is module.REGISTRY
            and registry.error is error
        )
        with pytest.raises(error):
            registry.resolve(registry.names[0], no_such_key=1)
    assert tracker.models.MODEL_NAMES == tracker.models.MODELS.names
