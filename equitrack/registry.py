"""A task's models by name: ``ModelRegistry(specs, constraints, error=...)`` with build, resolve, count, describe.

Every task (tracker.models, jets.models, tracker.clustering.models) registers its model classes with their default
hyperparameters, named size presets and value constraints here, so that a trial file resolves the same way in every
task: the preset's values over the defaults, explicit values over the preset's, each value checked against its
constraint. Unknown names, hyperparameters and presets, and bad values, raise the task's own error type with a
message that names the model, key and value and lists what is accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its class, default hyperparameters, size presets, their exact parameter counts (where the
    task pins them), whether its output is invariant under the task's symmetry, and a closed-form parameter count."""

    cls: type[nn.Module]
    defaults: dict[str, Any]
    presets: dict[str, dict[str, Any]]
    preset_counts: dict[str, int] = field(default_factory=dict)
    equivariant: bool = False
    param_count: Callable[..., int] | None = None


@dataclass(frozen=True)
class Constraint:
    """What values one hyperparameter accepts: ``kind`` is ``int``, ``float``, ``bool`` or ``choice``; ``minimum``
    bounds numbers from below (inclusive), ``below`` from above (exclusive); ``choices`` lists a choice's values."""

    kind: str
    minimum: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] = ()

    def check(self, value: Any) -> tuple[Any, str | None]:
        """``(value, None)`` with ints given for floats made float, or ``(value, what was expected)``."""
        if self.kind == "bool":
            return value, None if isinstance(value, bool) else "expected true or false"
        if self.kind == "choice":
            return value, None if value in self.choices else f"expected one of {list(self.choices)}"
        numeric = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric) or value < self.minimum:
            noun = "an integer" if self.kind == "int" else "a number"
            return value, f"expected {noun} >= {self.minimum}"
        if self.below is not None and value >= self.below:
            return value, f"expected a number in [{self.minimum:g}, {self.below:g})"
        return (float(value) if self.kind == "float" else value), None


def Int(minimum: int) -> Constraint:  # noqa: N802 - reads as a type in a constraint table
    """An integer >= ``minimum`` (booleans refused)."""
    return Constraint("int", minimum=minimum)


def Float(minimum: float, *, below: float | None = None) -> Constraint:  # noqa: N802
    """A number >= ``minimum`` (and < ``below`` where given), stored as a float."""
    return Constraint("float", minimum=minimum, below=below)


BOOL = Constraint("bool")


def Choice(values: tuple[Any, ...] | list[Any]) -> Constraint:  # noqa: N802
    """One of ``values``."""
    return Constraint("choice", choices=tuple(values))


class ModelRegistry:
    """The models of one task by name (see the module docstring).

    ``error`` is the task's error type; ``noun`` names a registered thing in the unknown-name message ("model",
    "stage"); ``label`` and ``where`` format the subject of a message: ``label.format(name=...)`` for unknown
    hyperparameters and presets, ``where.format(name=..., key=..., value=...)`` for a bad value. ``check(name,
    resolved)`` may refuse combinations of values (raising ``error``). Keys without a constraint take any value,
    and ``None`` is accepted where the default is ``None``.
    """

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        constraints: Mapping[str, Constraint],
        *,
        error: type[Exception],
        noun: str = "model",
        label: str = "model {name!r}",
        where: str = "model {name!r}: hyperparameter {key}={value!r}",
        check: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.specs = specs
        self.constraints = constraints
        self.error = error
        self.noun = noun
        self.label = label
        self.where = where
        self.extra_check = check

    @property
    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self.specs)

    def spec(self, name: str) -> ModelSpec:
        """The spec of ``name``; an unknown name raises the task's error listing the accepted ones."""
        if name not in self.specs:
            raise self.error(f"unknown {self.noun} {name!r}; accepted: {', '.join(self.specs)}")
        return self.specs[name]

    def resolve(self, name: str, **hparams: Any) -> dict[str, Any]:
        """The full, validated hyperparameters ``build(name, **hparams)`` would use (preset resolved)."""
        spec = self.spec(name)
        label = self.label.format(name=name)
        preset = hparams.pop("preset", None)
        unknown = sorted(set(hparams) - set(spec.defaults))
        if unknown:
            raise self.error(
                f"{label}: unknown hyperparameter(s) {unknown}; accepted: {', '.join(spec.defaults)}, preset"
            )
        resolved = dict(spec.defaults)
        if preset is not None:
            if preset not in spec.presets:
                accepted = ", ".join(spec.presets) or f"none (this {self.noun} has no presets)"
                raise self.error(f"{label}: unknown preset {preset!r}; accepted: {accepted}")
            resolved.update(spec.presets[preset])
        resolved.update(hparams)
        for key, value in resolved.items():
            constraint = self.constraints.get(key)
            if constraint is None or (value is None and spec.defaults[key] is None):
                continue
            resolved[key], expected = constraint.check(value)
            if expected is not None:
                raise self.error(f"{self.where.format(name=name, key=key, value=value)}: {expected}")
        if self.extra_check is not None:
            self.extra_check(name, resolved)
        return resolved

    def build(self, name: str, **hparams: Any) -> nn.Module:
        """The model ``name`` with the resolved hyperparameters; ``model.preset`` records the preset asked for."""
        preset = hparams.get("preset")
        model = self.spec(name).cls(**self.resolve(name, **hparams))
        model.preset = preset
        return model

    def describe(self, name: str) -> str:
        """One line per hyperparameter of ``name``: its default, constraint and each preset's value."""
        spec = self.spec(name)
        lines = [f"{self.noun} {name}: {spec.cls.__name__}; presets: {', '.join(spec.presets) or 'none'}"]
        for key, default in spec.defaults.items():
            c = self.constraints.get(key)
            rule = "any" if c is None else (
                f"{c.kind} in [{c.minimum:g}, {c.below:g})" if c.below is not None else
                f"{c.kind} >= {c.minimum}" if c.kind in ("int", "float") else
                f"one of {list(c.choices)}" if c.kind == "choice" else c.kind
            )
            by_preset = ", ".join(f"{p}={v[key]!r}" for p, v in spec.presets.items() if key in v)
            lines.append(f"  {key} = {default!r} ({rule})" + (f"; {by_preset}" if by_preset else ""))
        return "\n".join(lines)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["BOOL", "Choice", "Constraint", "Float", "Int", "ModelRegistry", "ModelSpec", "count_parameters"]
