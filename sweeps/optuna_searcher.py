"""Ray Tune's ``OptunaSearch`` with a sampler that never enters Ray's pickles.

Ray pickles the searcher into ``tuner.pkl`` when the Tuner is made, deep-copies and pickles it at every
experiment checkpoint, and unpickles it on restore. A live Optuna sampler may not survive that (optuna 5.1's
``NSGAIISampler`` holds a ``threading.Lock``), so this searcher keeps a :class:`~sweeps.optuna_search.SamplerSpec`,
builds the sampler in the process that suggests (the driver), and leaves the sampler out of its pickled state:
the study's trials travel (Optuna's in-memory storage pickles), the sampler is rebuilt from the spec on load,
seeded past the trials already asked so a restored search does not repeat its earlier suggestions.
Kept apart from :mod:`sweeps.optuna_search` so reading importances does not import Ray.
"""

from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from sweeps.optuna_search import SamplerSpec, distributions, sampler_spec
from sweeps.schema import GridFile

_STUDY_KEYS = ("_ot_study", "_sampler", "_ot_trials")


class LazySamplerOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose sampler is built from ``spec`` where it is used and never pickled."""

    def __init__(self, *, spec: SamplerSpec, **kwargs: Any) -> None:
        self._spec = spec
        super().__init__(sampler=None, **kwargs)

    def _setup_study(self, mode: str | list[str]) -> None:
        self._sampler = self._spec.build()
        super()._setup_study(mode)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _STUDY_KEYS}
        study: optuna.Study | None = self.__dict__.get("_ot_study")
        state["_study_saved"] = None if study is None else {
            "storage": study._storage, "name": study.study_name, "directions": study.directions}
        # live Optuna trials point at the study (and so at the sampler): keep their ids only
        state["_ot_trial_ids"] = {k: t._trial_id for k, t in self.__dict__.get("_ot_trials", {}).items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_study_saved", None)
        trial_ids: dict[str, int] = state.pop("_ot_trial_ids", {})
        self.__dict__.update(state)
        self._sampler = None
        self._ot_study = None
        self._ot_trials = {}
        if saved is not None:
            storage = saved["storage"]
            n_before = len(storage.get_all_trials(storage.get_study_id_from_name(saved["name"]), deepcopy=False))
            self._sampler = self._spec.build(offset=n_before)
            self._ot_study = optuna.create_study(storage=saved["storage"], sampler=self._sampler,
                                                 pruner=optuna.pruners.NopPruner(), study_name=saved["name"],
                                                 directions=saved["directions"], load_if_exists=True)
            self._ot_trials = {k: optuna.trial.Trial(self._ot_study, tid) for k, tid in trial_ids.items()}

    def save(self, checkpoint_path: str) -> None:
        """Ray's experiment checkpoint: the picklable state (no sampler)."""
        import pickle

        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.__getstate__(), out)

    def restore(self, checkpoint_path: str) -> None:
        """Load what :meth:`save` wrote and rebuild the sampler from the spec."""
        import pickle

        with open(checkpoint_path, "rb") as inp:
            self.__setstate__(pickle.load(inp))


def searcher(grid: GridFile) -> Any:
    """Ray Tune's ``OptunaSearch`` over the grid's space and objectives, with the sampler built lazily."""
    objs = grid.search.objectives
    metric: Any = [o.metric for o in objs] if len(objs) > 1 else objs[0].metric
    mode: Any = [o.mode for o in objs] if len(objs) > 1 else objs[0].mode
    return LazySamplerOptunaSearch(spec=sampler_spec(grid), space=distributions(grid), metric=metric, mode=mode)
