"""Grid files: every kind of bad grid names its key and value; shipped grids parse, resolve and train."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from equitrack.task import get_task
from sweeps.run import EXIT_CONFIG, main
from sweeps.schema import GridError, config_id, load_grid, parse_grid, resolve
from tracker.train.config import yaml_text

REPO = Path(__file__).resolve().parents[1]
GRIDS = sorted((REPO / "sweeps" / "grids").glob("*.yaml"))
QUICK = REPO / "sweeps" / "grids" / "quick.yaml"


def _quick() -> dict[str, Any]:
    return yaml.safe_load(QUICK.read_text())


def _error(raw: dict[str, Any], *, resolve_cells: bool = True) -> str:
    with pytest.raises(GridError) as info:
        grid = parse_grid(raw, source="bad.yaml")
        if resolve_cells:
            resolve(grid, source="bad.yaml")
    text = str(info.value)
    assert "bad.yaml" in text
    return text


def _with(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(_quick())
    node = raw
    *parents, last = path.split("/")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


def test_unknown_top_level_key_lists_allowed_keys() -> None:
    text = _error(_with("sedes", 3))
    assert "sedes" in text and "unknown key" in text and "seeds" in text and "experiment" in text


def test_unknown_nested_key_in_resources() -> None:
    text = _error(_with("resources/gpus", 1))
    assert "resources.gpus" in text and "gpus_per_trial" in text


def test_grid_axis_with_invalid_value_names_axis_and_value() -> None:
    text = _error(_with("grid", {"model.name": ["euclidnet"], "train.lr": [0.001, "fast"]}))
    assert "train.lr" in text and "'fast'" in text


def test_literal_value_lists_allowed_values() -> None:
    text = _error(_with("data", {"source": "cern"}))
    assert "data.source" in text and "'cern'" in text
    assert "simulated" in text and "hitgraphs" in text


def test_unknown_trial_key_from_grid_axis() -> None:
    text = _error(_with("grid", {"model.name": ["euclidnet"], "train.learning_rate": [0.1]}))
    assert "train.learning_rate" in text and "unknown key" in text and "lr" in text


def test_grid_key_outside_trial_sections() -> None:
    text = _error(_with("grid", {"optimizer.lr": [0.1]}), resolve_cells=False)
    assert "optimizer.lr" in text and "data, model, train, eval" in text


def test_seed_axis_and_bad_seeds_are_rejected() -> None:
    assert "train.seed" in _error(_with("grid", {"train.seed": [1, 2]}), resolve_cells=False)
    assert "seeds" in _error(_with("seeds", 0), resolve_cells=False)
    assert "distinct" in _error(_with("seeds", [1, 1]), resolve_cells=False)


def test_bad_value_is_named_once() -> None:
    """A validator's message that already says what it got is not followed by a second '(got ...)'."""
    text = _error(_with("seeds", 0), resolve_cells=False)
    assert "a seed count must be >= 1 (got 0)" in text and text.count("(got 0)") == 1
    assert _error(_with("seeds", [1, 1]), resolve_cells=False).count("(got [1, 1])") == 1
    assert "(got 'fast')" in _error(_with("grid", {"model.name": ["euclidnet"], "train.lr": [0.001, "fast"]}))


def test_missing_model_name() -> None:
    raw = _with("grid", {"train.lr": [0.001]})
    raw["models"] = {"euclidnet": {}, "interaction_network": {}}
    assert "model.name is required" in _error(raw)


def test_bad_search_and_scheduler() -> None:
    assert "search.space" in _error(_with("search", {"type": "optuna"}), resolve_cells=False)
    text = _error(_with("scheduler", "hyperband"), resolve_cells=False)
    assert "scheduler.type" in text and "'hyperband'" in text and "asha" in text
    text = _error(_with("search", {"type": "optuna", "space": {"train.lr": {"type": "float", "low": 1}}}),
                  resolve_cells=False)
    assert "train.lr" in text and "high" in text


def test_negative_resources() -> None:
    text = _error(_with("resources", {"cpus_per_trial": 0}), resolve_cells=False)
    assert "resources.cpus_per_trial" in text and "greater than 0" in text


def test_cli_exits_2_on_bad_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with("grid", {"model.name": ["euclidnet"], "train.epochs": [0]})))
    assert main([str(bad), "--dry-run"]) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert "bad.yaml" in err and "train.epochs" in err and "0" in err
    assert err.count("error:") == 1 and "train.epochs" not in out  # said once, on stderr
    assert main([str(tmp_path / "missing.yaml")]) == EXIT_CONFIG
    assert main([str(QUICK), "--set", "seeds=[]"]) == EXIT_CONFIG


def test_yaml_syntax_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(GridError, match="broken.yaml: not valid YAML"):
        load_grid(bad)


@pytest.mark.parametrize("path", GRIDS, ids=[p.stem for p in GRIDS])
def test_shipped_grid_parses_and_resolves(path: Path) -> None:
    grid = load_grid(path)
    cells = resolve(grid, source=str(path))
    assert cells
    assert len({c.key for c in cells}) == len(cells)
    assert len({c.run_name for c in cells}) == len(cells)
    for c in cells:
        assert c.trial["train"]["seed"] == c.seed and c.run_name.endswith(f"-s{c.seed}")
        assert c.task == grid.task
        # each run's config.yaml artifact: libyaml's emitter writes PyYAML's text exactly
        resolved = get_task(grid.task).config_type.model_validate(c.trial).model_dump(mode="json")
        assert yaml_text(resolved) == yaml.safe_dump(resolved, sort_keys=False)


def test_expected_cell_counts() -> None:
    counts = {p.stem: len(resolve(load_grid(p))) for p in GRIDS}
    assert counts["quick"] == 4
    assert counts["paper_table1"] == 2 * 3 * 5
    assert counts["paper_rotation"] == 2 * 5 * 5
    assert counts["jets_quick"] == 8 * 2  # every tagger, 2 seeds
    assert counts["jets_boost"] == 5 * 2 * 3  # models x (no augmentation, augmentation) x seeds
    assert counts["jets_data_efficiency"] == 5 * 4 * 3
    assert counts["jets_ablation"] == (2 + 3 * 3) * 3
    assert counts["oc_quick"] == 2 * 2 and counts["oc_equivariance"] == (2 + 4) * 3
    rot = load_grid(REPO / "sweeps/grids/paper_rotation.yaml")
    assert len(rot.eval["rotations_deg"]) == 10 and max(rot.eval["rotations_deg"]) == 180


def test_config_id_ignores_seed_and_names_are_readable() -> None:
    grid = load_grid(REPO / "sweeps/grids/paper_rotation.yaml")
    cells = resolve(grid)
    by_id: dict[str, set[int]] = {}
    for c in cells:
        by_id.setdefault(c.config_id, set()).add(c.seed)
    assert all(seeds == set(range(5)) for seeds in by_id.values()) and len(by_id) == 10
    names = {c.run_name for c in cells}
    assert "euclidnet-paper_16-rot045-s3" in names and "interaction_network-h32-rot180-s0" in names
    a = cells[0].trial
    b = copy.deepcopy(a)
    b["train"]["seed"] = 99
    assert config_id(a) == config_id(b)
    b["train"]["checkpoint_every"] = 5  # changes no result: the cell (and a resumed sweep's finished runs) stay
    assert config_id(a) == config_id(b)
    assert cells[0].config_id == "2f6af16cddb9"  # ids of existing sweeps must not move when a release adds keys
    noisy = copy.deepcopy(a)  # a key added later (data.noise_hits) counts once it leaves its default
    noisy["data"]["noise_hits"] = True
    assert config_id(noisy) != config_id(a)
    b["train"]["lr"] = 0.5
    assert config_id(a) != config_id(b)


def test_per_model_defaults_and_grid_blocks() -> None:
    cells = resolve(load_grid(REPO / "sweeps/grids/paper_table1.yaml"))
    ein = {c.trial["model"].get("preset") for c in cells if c.model == "euclidnet"}
    inn = {c.trial["model"].get("hidden") for c in cells if c.model == "interaction_network"}
    assert ein == {"paper_8", "paper_16", "paper_32"} and inn == {16, 32, 40}
    assert all(c.trial["model"].get("c") == 0.005 for c in cells if c.model == "euclidnet")


def test_dry_run_prints_table_and_totals(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    assert main([str(REPO / "sweeps/grids/paper_table1.yaml"), "--dry-run", "--tracking-uri", "sqlite:///x.db"]) == 0
    out = capsys.readouterr().out
    assert "euclidnet-paper_8-s0" in out and "30 trial runs" in out and "6 configurations x 5 seeds" in out
    assert not Path("x.db").exists()


TINY = {"train.epochs": 1, "eval.rotations_deg": [0, 90], "eval.timing": False, "eval.track_metrics": False}
CLUSTERING_TINY = {"train.epochs": 1, "eval.rotations_deg": [0, 90], "eval.eps": [0.2], "eval.min_samples": [1]}
JETS_TINY = {"train.epochs": 1, "train.batch_size": 20, "eval.boosts_beta": [0.0, 0.5], "eval.timing": False}


def _shrink(raw: dict, task: str, shared_trackml: Path) -> dict:
    """The cell's trial with tiny data and one epoch, for its task."""
    if task == "jets":
        raw["data"].update(jets={"train": 40, "val": 20, "test": 20}, max_constituents=10)
        tiny = JETS_TINY
    elif task == "clustering":
        raw["data"].update(events={"train": 2, "val": 1, "test": 1}, pileup=10)
        tiny = CLUSTERING_TINY
    elif raw["data"]["source"] == "hitgraphs":
        raw["data"].update(path=str(shared_trackml / "hitgraphs_plus_1GeV5"), events={"train": 2, "val": 1, "test": 1})
        tiny = TINY
    else:
        raw["data"].update(events={"train": 2, "val": 1, "test": 1}, pileup=10)
        tiny = TINY
    for key, value in tiny.items():
        section, name = key.split(".")
        raw[section][name] = value
    return raw


@pytest.mark.slow
def test_every_shipped_grid_trains_one_step(tmp_path: Path, shared_trackml: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The first cell of every shipped grid (data shrunk, one epoch) goes through its task's real trainer."""
    monkeypatch.setenv("EQUITRACK_CACHE", str(tmp_path / "cache"))
    from equitrack.reporter import NullReporter

    for path in GRIDS:
        grid = load_grid(path)
        task = get_task(grid.task)
        cell = resolve(grid, source=str(path))[0]
        cfg = task.config_type.model_validate(_shrink(copy.deepcopy(cell.trial), grid.task, shared_trackml))
        task.prepare_data(cfg)
        result = task.run_trial(cfg, NullReporter(), workdir=tmp_path / path.stem, resume=False)
        headline = "track_dm_eff" if grid.task == "clustering" else "auc"
        assert 0.0 <= result.metrics[headline] <= 1.0, path.name
        assert result.metrics["n_params"] > 0


def test_set_overrides_a_grid_axis_whose_key_has_dots(capsys: pytest.CaptureFixture[str]) -> None:
    """``--set grid.AXIS=...``: everything after ``grid.`` is one dotted axis key (set where it is, else added to
    every block; ``grid.N.AXIS`` names a block; null removes); ``search.space.KEY`` likewise for a dimension."""
    grid = load_grid(QUICK, overrides=["grid.model.hidden=[8, 16]"])
    assert grid.grid == [{"model.name": ["euclidnet", "interaction_network"], "model.hidden": [8, 16]}]
    assert len(resolve(grid)) == 2 * 2 * 2
    assert load_grid(QUICK, overrides=["grid.model.name=euclidnet"]).grid == [{"model.name": ["euclidnet"]}]
    assert load_grid(QUICK, overrides=["grid.model.name=null"]).grid == [{}]
    table1 = REPO / "sweeps/grids/paper_table1.yaml"
    blocks = load_grid(table1).grid
    assert len(blocks) == 2 and "model.preset" in blocks[0] and "model.hidden" in blocks[1]
    grid = load_grid(table1, overrides=["grid.model.hidden=[8]"])  # only the block that has the axis
    assert grid.grid[1]["model.hidden"] == [8] and "model.hidden" not in grid.grid[0]
    grid = load_grid(table1, overrides=["grid.1.train.lr=[0.01, 0.001]"])
    assert grid.grid[1]["train.lr"] == [0.01, 0.001] and "train.lr" not in grid.grid[0]
    with pytest.raises(GridError, match=r"grid\.5\.train\.lr.*block 5 does not exist"):
        load_grid(table1, overrides=["grid.5.train.lr=[0.01]"])
    pareto = REPO / "sweeps/grids/optuna_pareto.yaml"
    grid = load_grid(pareto, overrides=["search.space.model.hidden={type: int, low: 8, high: 16, step: 8}",
                                        "search.space.model.c=null"])
    assert list(grid.search.space) == ["model.hidden", "train.lr"] and grid.search.space["model.hidden"].high == 16
    with pytest.raises(GridError, match="grid key 'model.hiden'|model.hiden"):
        resolve(load_grid(QUICK, overrides=["grid.model.hiden=[8]"]))
    # the command line takes it too (it exited 2 before)
    assert main([str(QUICK), "--dry-run", "--tracking-uri", "sqlite:////nonexistent/x.db",
                 "--set", "grid.model.hidden=[8, 16]"]) == 0
    assert "h16" in capsys.readouterr().out


def test_a_changed_configuration_never_takes_an_existing_run_name() -> None:
    """A cell whose readable name another configuration already holds in the sweep gets its config id suffix;
    the configuration that holds it keeps it."""
    from sweeps.schema import distinct_names

    old = resolve(load_grid(QUICK))
    new = resolve(load_grid(QUICK, overrides=["train.epochs=12"]))
    taken = {c.run_name: c.config_id for c in old}
    named = distinct_names(new, taken)
    assert [c.run_name for c in named] == [f"{c.run_name}-{c.config_id[:6]}" for c in new]
    assert not {c.run_name for c in named} & set(taken)
    assert [c.run_name for c in distinct_names(old, taken)] == [c.run_name for c in old]
