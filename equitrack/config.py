"""Task-free configuration helpers shared by the science packages and the sweeps: the base classes of trial-file
sections, dotted keys, YAML in and out, and one way of turning a pydantic validation error into lines that name the
key, the value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class ConfigError(ValueError):
    """A trial or grid file that does not validate; the message names the file, key and value."""


class Section(BaseModel):
    """A section of a trial file: frozen (configs are values), unknown keys are errors that name the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(BaseModel):
    """The ``model`` section: a model ``name``, an optional ``preset`` and any further hyperparameters (extra keys
    allowed: the task's model registry validates them). A task subclasses it to set the default ``name``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    preset: str | None = None

    def hparams(self) -> dict[str, Any]:
        """All hyperparameters except the name, with a ``None`` preset dropped."""
        out = {k: v for k, v in self.model_dump().items() if k != "name"}
        if out.get("preset") is None:
            out.pop("preset", None)
        return out


class TrialSections(Section):
    """A task's whole trial (sections ``data``, ``model``, ``train``, ``eval``, …), read from a dict or a YAML file.

    ``model.name`` must be given (unless :attr:`model_name_required` is off: a task whose model section has a
    default name); the error names :attr:`model_examples`. Bad input raises :class:`ConfigError` naming the source,
    each bad key and its value, and the allowed keys of an unknown one."""

    #: model names the missing-``model.name`` error suggests
    model_examples: ClassVar[str] = ""
    #: whether a trial must name its model
    model_name_required: ClassVar[bool] = True

    @field_validator("model", mode="before", check_fields=False)
    @classmethod
    def _model_name_required(cls, v: Any) -> Any:
        if cls.model_name_required and isinstance(v, dict) and "name" not in v:
            raise ValueError(f"model.name is required (e.g. {cls.model_examples})")
        return v

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<dict>") -> Any:
        """Validate a plain dict as a trial; raise :class:`ConfigError` naming ``source`` on failure."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping with sections {'/'.join(cls.model_fields)}, "
                              f"got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, source=source, root=cls)) from None

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read and validate a trial YAML file."""
        path = Path(path)
        return cls.from_dict(read_yaml(path, what="trial file", error=ConfigError) or {}, source=str(path))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"hidden": 8}} -> {"model.hidden": 8}``: the dotted keys of grids, bundles and MLflow params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def identity(resolved: dict[str, Any], *, neutral: Iterable[tuple[str, str]] = (),
             added: Mapping[tuple[str, str], Any] | None = None) -> dict[str, Any]:
    """A resolved trial config as it identifies results (what config ids and checkpoint hashes are made of).

    ``neutral``: (section, key) pairs that change no result, left out; ``added``: keys a release added after
    sweeps existed, with their default, left out while they hold it, so that finished runs and checkpoints keep
    their identity when the platform grows a key.
    """
    out = copy.deepcopy(resolved)
    for section, key in neutral:
        out.get(section, {}).pop(key, None)
    for (section, key), default in (added or {}).items():
        if section in out and out[section].get(key, default) == default:
            out[section].pop(key, None)
    return out


def allowed_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the pydantic model that owns the last element of ``loc`` inside ``model``'s tree."""
    node: Any = model
    for part in loc[:-1]:
        field = getattr(node, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        node = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if node is None:
            return []
    return sorted(getattr(node, "model_fields", {}))


def problems(err: ValidationError, *, root: type[BaseModel] | None = None) -> Iterator[tuple[tuple[Any, ...], str]]:
    """``(loc, message)`` per problem; the message ends with ``(got VALUE)`` unless the validator already said what
    it got, and an unknown key lists the allowed ones (looked up in ``root``'s tree)."""
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; allowed: {', '.join(allowed_keys(root, e['loc']))}"
        if not (msg.endswith(")") and "(got " in msg):
            msg = f"{msg} (got {e.get('input')!r})"
        yield tuple(e["loc"]), msg


def format_validation_error(err: ValidationError, *, source: str, title: str = "invalid configuration",
                            root: type[BaseModel] | None = None) -> str:
    """One line per problem: ``source: title`` then ``  key.path: message (got value)``."""
    lines = [f"{source}: {title}"]
    for loc, msg in problems(err, root=root):
        lines.append(f"  {'.'.join(str(p) for p in loc) or '<root>'}: {msg}")
    return "\n".join(lines)


def yaml_text(data: Any) -> str:
    """``yaml.safe_dump(data, sort_keys=False)``, the same text, with libyaml's emitter where PyYAML has it (~5x
    faster: a bundle of 100 members writes 100 ``config.yaml`` before its first step)."""
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def read_yaml(path: Path, *, what: str, error: type[Exception]) -> Any:
    """The YAML document in ``path``; a missing file or bad YAML raises ``error`` naming the file."""
    try:
        return yaml.safe_load(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise error(f"{path}: no such {what}") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
