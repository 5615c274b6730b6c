"""The task seam: sweeps drive any task through equitrack.task, and hold no science of their own."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from equitrack.task import Task, TaskError, get_task, register_task, task_names
from sweeps.schema import GridError, parse_grid, resolve

REPO = Path(__file__).resolve().parents[1]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToyModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str


class ToyPipeline(_Section):
    stages: list[str] = ["embed"]


class ToyTrain(_Section):
    seed: int = 0
    epochs: int = 1


class ToyConfig(_Section):
    data: dict[str, Any] = {}
    model: ToyModel
    train: ToyTrain = ToyTrain()
    eval: dict[str, Any] = {}
    pipeline: ToyPipeline = ToyPipeline()


class ToyTask:
    """A task with a fourth section and its own run-name parts; no physics anywhere."""

    name = "toy"
    config_type = ToyConfig
    result_neutral_keys = ()
    added_defaults: dict = {}
    epoch_metrics = ("loss",)
    headline_metrics = {"loss": "loss"}
    bundling = None

    def run_name_parts(self, trial, varied):
        return [trial["model"]["name"], "+".join(trial["pipeline"]["stages"])]

    def check_model(self, config):
        if config.model.name != "box":
            raise ValueError(f"no model {config.model.name!r}")

    def prepare_data(self, config):
        return "toy-data"

    def run_trial(self, config, reporter, *, workdir, resume=True):
        raise NotImplementedError


@pytest.fixture(scope="module", autouse=True)
def toy() -> None:
    register_task(ToyTask())


def _grid(**extra: Any) -> dict[str, Any]:
    return {"name": "t", "experiment": "e", "task": "toy", "models": {"box": {}}, **extra}


def test_installed_tasks_load_through_entry_points() -> None:
    assert {"tracking", "jets"} <= set(task_names())
    for name in ("tracking", "jets"):
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert {"data", "model", "train", "eval"} <= set(task.config_type.model_fields)
        assert "val_loss" in task.epoch_metrics
    assert get_task().name == "tracking"  # the default


def test_unknown_task_names_the_installed_ones() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'nope'; installed tasks: .*jets.*tracking"):
        get_task("nope")
    with pytest.raises(GridError, match=r"task: .*unknown task 'nope'"):
        parse_grid({**_grid(), "task": "nope"}, source="g.yaml")


def test_a_task_section_beyond_data_train_eval_is_a_grid_section_and_axis() -> None:
    grid = parse_grid(_grid(pipeline={"stages": ["embed", "cluster"]},
                            grid={"pipeline.stages": [["embed"], ["embed", "cluster"]]}), source="g.yaml")
    cells = resolve(grid, source="g.yaml")
    assert [c.trial["pipeline"]["stages"] for c in cells] == [["embed"], ["embed", "cluster"]]
    assert [c.run_name for c in cells] == ["box-embed-s0", "box-embed+cluster-s0"]
    assert all(c.task == "toy" for c in cells)


def test_unknown_top_level_key_lists_grid_keys_and_task_sections() -> None:
    with pytest.raises(GridError, match=r"g.yaml: invalid grid file\n  pipelines: unknown key; allowed: .*pipeline"):
        parse_grid(_grid(pipelines={}), source="g.yaml")
    # a tracking grid has no pipeline section
    with pytest.raises(GridError, match=r"pipeline: unknown key"):
        parse_grid({"name": "t", "experiment": "e", "pipeline": {}}, source="g.yaml")
    with pytest.raises(GridError, match=r"grid key 'pipeline.stages' must be a dotted trial key starting with one "
                                        r"of data, model, train, eval"):
        parse_grid({"name": "t", "experiment": "e", "grid": {"pipeline.stages": [["a"]]}}, source="g.yaml")


def test_the_task_checks_its_models_before_anything_runs() -> None:
    with pytest.raises(GridError, match=r"cannot be built: ValueError: no model 'crate'"):
        resolve(parse_grid({**_grid(), "models": {"crate": {}}}, source="g.yaml"), source="g.yaml")


def test_sweeps_import_no_science_package() -> None:
    """sweeps/ reaches tasks only through equitrack.task: no import of tracker or jets, at any level."""
    found = []
    for path in sorted((REPO / "sweeps").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("tracker", "jets")]
    assert found == []


def _import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, at module level or inside functions."""
    packages = ("equitrack", "tracker", "jets", "sweeps", "dashboards")
    modules = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in packages:
            modules[".".join(rel.with_suffix("").parts).removesuffix(".__init__")] = path

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[mod] |= {o for t in targets if (o := owner(t)) and o != mod and not mod.startswith(o + ".")}
    return graph


def test_no_import_circles_top_level_or_function_local() -> None:
    graph = _import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []
    assert not {d for d in graph["equitrack.task"] | graph["equitrack.config"] if not d.startswith("equitrack")}
