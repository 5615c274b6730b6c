"""Our ``lorentznet`` against the public LorentzNet code, side by side in one run, on CPU.

The public code (github.com/sdogsq/LorentzNet-release, its ``models.py``) is imported from a checkout given by
``--reference`` (nothing of it is copied here). Both models get the same configuration — the public top-tagging
run's: 72 hidden, 6 LGEBs, c = 5e-3, beams added as two nodes with (ψ(m)·[particle], ψ(m)·[beam]) scalars, the
x_i − x_j coordinate update — i.e. ours is built with ``beams=True, x_update="difference"``. Four-momenta (beams
included) are in units of 100 GeV for both (our ``scale``; the reference's collate ``scale`` = 0.01): in GeV the
reference's per-term clamp at ±100 (which ours leaves out, it breaks equivariance) can act and outputs differ.

1. **Identical weights, identical outputs.** The reference's state dict is loaded into ours (same parameter
   names; our one logit = the reference's class-1 minus class-0 score, so the last layer is their difference),
   with non-trivial batch-norm running statistics, and both are evaluated in float64 on jets without padding
   (the reference's readout divides by the padded node count; ours by the real one): eval-mode outputs, the
   train-mode outputs and the gradient of every parameter are compared.
2. **Speed.** Inference (``no_grad``, eval) on ``--batch`` jets and a training step (forward, loss, backward,
   Adam step) on ``--train-batch`` jets, float32, calls alternating between the two models, ``--runs`` times
   after ``--warmup``; the jets are padded to the batch's largest one, as the reference's collate does, and the
   reference's inputs (edge list, node scalars, masks; done in its DataLoader workers) are built outside the
   timed region. Reported: median thread CPU time and median wall time per call, and the ratio reference / ours.

    git clone https://github.com/sdogsq/LorentzNet-release /tmp/LorentzNet-release
    .venv/bin/python benchmarks/jets_lorentznet.py --reference /tmp/LorentzNet-release --threads 1 \\
        --batch 100 --train-batch 32 --runs 10 --warmup 2 --json benchmarks/results/jets_lorentznet_cpu.json

Results: docs/benchmarks.md ("LorentzNet against the public code").
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jets.models import build_model, count_parameters

CONFIG = {"hidden": 72, "layers": 6, "c": 5e-3}
SCALE = 100.0  # GeV per unit, both models


def load_reference(path: Path):
    """The public ``models.py`` as a module (its ``LorentzNet`` and ``psi``)."""
    spec = importlib.util.spec_from_file_location("lorentznet_reference", path / "models.py")
    if spec is None or spec.loader is None or not (path / "models.py").is_file():
        sys.exit(f"no models.py under {path}: clone github.com/sdogsq/LorentzNet-release there")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_jets(n_jets: int, seed: int, n_min: int = 20, n_max: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Boosted-jet-like constituents: pion mass, 1–400 GeV, a cone of ~0.3, multiplicity n_min–n_max.

    (Exactly massless constituents would make both models' ψ(√|m²|) scalars pure round-off, ~1e-8, computed in
    a different order by each: a difference of the inputs, not of the models.)"""
    g = np.random.default_rng(seed)
    n = g.integers(n_min, n_max + 1, n_jets)
    width = int(n.max())
    e = 1.0 + 399.0 * g.random((n_jets, width)) ** 4
    eta = g.normal(0.0, 0.8, (n_jets, 1)) + g.normal(0.0, 0.3, (n_jets, width))
    phi = g.uniform(0, 2 * math.pi, (n_jets, 1)) + g.normal(0.0, 0.3, (n_jets, width))
    pt = np.sqrt(e * e - 0.13957**2) / np.cosh(eta)
    p4 = np.stack([e, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1)
    mask = np.arange(width)[None, :] < n[:, None]
    return torch.from_numpy(p4 * mask[..., None]), torch.from_numpy(mask)


REPO = Path(__file__).resolve().parents[1]


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (records carry no machine's absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return Path(path).name


def load_jets(sample: str | None, n_jets: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Jets from a generated-sample npz (``jets.data.generated``) if given/shipped, else synthetic ones."""
    from jets.data import generated

    path = Path(sample) if sample else generated.SAMPLE_PATH
    if path.is_file():
        p4, mask, _ = generated.load_generated(path)
        idx = np.random.default_rng(seed).permutation(len(p4))[:n_jets]
        return torch.from_numpy(p4[idx]).double(), torch.from_numpy(mask[idx]), _shown(path)
    p4, mask = synthetic_jets(n_jets, seed)
    return p4, mask, "synthetic (1-400 GeV, 20-80 constituents)"


def crop(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad only to the batch's largest jet (what the reference's collate does)."""
    width = int(mask.sum(1).max())
    return p4[:, :width].contiguous(), mask[:, :width].contiguous()


def reference_inputs(p4: torch.Tensor, mask: torch.Tensor, ref) -> dict:
    """The reference model's inputs for a padded batch (its collate + training loop, re-derived here)."""
    b = p4.shape[0]
    beams = torch.tensor([[math.sqrt(2.0), 0, 0, 1.0], [math.sqrt(2.0), 0, 0, -1.0]], dtype=p4.dtype)
    x = torch.cat([beams.expand(b, 2, 4), p4], dim=1) / SCALE
    node = torch.cat([torch.ones(b, 2, dtype=torch.bool), mask], dim=1)
    n = x.shape[1]
    is_beam = torch.zeros(b, n, dtype=p4.dtype)
    is_beam[:, :2] = 1.0
    mass = ref.normsq4(x).abs().sqrt()
    scalars = ref.psi(torch.stack([mass * (1 - is_beam), mass * is_beam], dim=-1))  # one-hot columns (-1, +1)
    edge = node.unsqueeze(1) & node.unsqueeze(2) & ~torch.eye(n, dtype=torch.bool)
    jet, i, j = edge.nonzero(as_tuple=True)
    return {
        "scalars": scalars.reshape(b * n, 2), "x": x.reshape(b * n, 4), "edges": [jet * n + i, jet * n + j],
        "node_mask": node.reshape(b * n, 1).to(p4.dtype), "edge_mask": edge.reshape(b * n * n, 1), "n_nodes": n,
    }


def transfer(ref_model, ours) -> None:
    """Load the reference's weights into ours: same names; our logit = class 1 − class 0."""
    state = dict(ref_model.state_dict())
    w, bias = state.pop("graph_dec.3.weight"), state.pop("graph_dec.3.bias")
    state["graph_dec.3.weight"] = w[1:2] - w[0:1]
    state["graph_dec.3.bias"] = bias[1:2] - bias[0:1]
    ours.load_state_dict(state, strict=True)


def identity_check(ref, p4: torch.Tensor, mask: torch.Tensor, seed: int) -> dict:
    """Same weights -> same outputs and gradients, float64, jets cut to a common multiplicity (no padding)."""
    k = int(mask.sum(1).min())
    p4, mask = p4[:, :k].double(), mask[:, :k]
    torch.manual_seed(seed)
    ref_model = ref.LorentzNet(n_scalar=2, n_hidden=CONFIG["hidden"], n_class=2, n_layers=CONFIG["layers"],
                               c_weight=CONFIG["c"], dropout=0.0).double()
    with torch.no_grad():
        for mod in ref_model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
    ours = build_model("lorentznet", **CONFIG, beams=True, scale=SCALE, x_update="difference").double()
    transfer(ref_model, ours)
    inputs = reference_inputs(p4, mask, ref)
    result = {"jets": p4.shape[0], "constituents": k}
    for mode in ("eval", "train"):
        ref_model.train(mode == "train")
        ours.train(mode == "train")
        ref_model.zero_grad()
        ours.zero_grad()
        with torch.set_grad_enabled(mode == "train"):
            r = ref_model(**inputs)
            r = r[:, 1] - r[:, 0]
            o = ours(p4, mask)
        result[f"{mode}_max_abs_diff"] = float((r - o).detach().abs().max())
        result[f"{mode}_max_abs_logit"] = float(r.detach().abs().max())
        if mode == "train":
            r.sum().backward()
            o.sum().backward()
            ref_grads = dict(ref_model.named_parameters())
            diff = scale = 0.0
            for name, p in ours.named_parameters():
                g_ref = ref_grads[name].grad
                if name.startswith("graph_dec.3"):  # our row = class-1 row − class-0 row: same gradient as row 1
                    g_ref = g_ref[1:2]
                diff = max(diff, float((p.grad - g_ref).abs().max()))
                scale = max(scale, float(g_ref.abs().max()))
            # relative to the largest gradient entry (biases followed by a batch norm have zero gradient: only
            # round-off, no per-parameter relative scale)
            result["train_grad_max_abs_diff_over_max_grad"] = diff / scale
    return result


def timed(fn, runs: int, warmup: int) -> list[tuple[float, float]]:
    """(thread CPU s, wall s) of each of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        out.append((time.thread_time() - c0, time.perf_counter() - w0))
    return out


def bench(ref, p4: torch.Tensor, mask: torch.Tensor, *, batch: int, train_batch: int, runs: int,
          warmup: int, seed: int) -> dict:
    torch.manual_seed(seed)
    ref_model = ref.LorentzNet(n_scalar=2, n_hidden=CONFIG["hidden"], n_class=2, n_layers=CONFIG["layers"],
                               c_weight=CONFIG["c"], dropout=0.0)
    ours = build_model("lorentznet", **CONFIG, beams=True, scale=SCALE, x_update="difference")
    transfer(ref_model, ours)
    res: dict = {"parameters": {"ours": count_parameters(ours), "reference": count_parameters(ref_model)}}
    # inference
    p_inf, m_inf = crop(p4[:batch].float(), mask[:batch])
    ref_in = reference_inputs(p_inf, m_inf, ref)
    ref_model.eval()
    ours.eval()
    cases = {}
    with torch.no_grad():
        cases["inference"] = (lambda: ours(p_inf, m_inf), lambda: ref_model(**ref_in))
    # training step
    p_tr, m_tr = crop(p4[batch:batch + train_batch].float(), mask[batch:batch + train_batch])
    ref_tr = reference_inputs(p_tr, m_tr, ref)
    labels = torch.arange(p_tr.shape[0]) % 2
    opt_o = torch.optim.Adam(ours.parameters(), lr=1e-4)
    opt_r = torch.optim.Adam(ref_model.parameters(), lr=1e-4)

    def step_ours() -> None:
        ours.train()
        opt_o.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(ours(p_tr, m_tr), labels.float()).backward()
        opt_o.step()

    def step_ref() -> None:
        ref_model.train()
        opt_r.zero_grad()
        torch.nn.functional.cross_entropy(ref_model(**ref_tr), labels).backward()
        opt_r.step()

    cases["train_step"] = (step_ours, step_ref)
    for case, (f_ours, f_ref) in cases.items():
        t_o, t_r = [], []
        for _ in range(warmup):
            with torch.no_grad() if case == "inference" else torch.enable_grad():
                f_ours(), f_ref()
        for _ in range(runs):  # alternate, so load changes hit both alike
            with torch.no_grad() if case == "inference" else torch.enable_grad():
                t_o += timed(f_ours, 1, 0)
                t_r += timed(f_ref, 1, 0)
        med = lambda ts, k: statistics.median(t[k] for t in ts) * 1e3  # noqa: E731
        res[case] = {
            "jets": (p_inf if case == "inference" else p_tr).shape[0],
            "padded_width": (p_inf if case == "inference" else p_tr).shape[1],
            "ours_cpu_ms": med(t_o, 0), "ref_cpu_ms": med(t_r, 0),
            "ours_wall_ms": med(t_o, 1), "ref_wall_ms": med(t_r, 1),
        }
        res[case]["ratio_cpu"] = res[case]["ref_cpu_ms"] / res[case]["ours_cpu_ms"]
        res[case]["ratio_wall"] = res[case]["ref_wall_ms"] / res[case]["ours_wall_ms"]
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default="/tmp/LorentzNet-release", help="checkout of sdogsq/LorentzNet-release")
    ap.add_argument("--sample", default=None, help="generated-sample npz (default: the shipped one if present)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100, help="jets per inference call (seed 002 table 4: 100)")
    ap.add_argument("--train-batch", type=int, default=32, help="jets per training step (the public run: 32)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ref = load_reference(Path(args.reference))
    p4, mask, source = load_jets(args.sample, args.batch + args.train_batch, args.seed)
    commit = subprocess.run(["git", "-C", args.reference, "rev-parse", "HEAD"], capture_output=True, text=True)
    out = {
        "config": {**CONFIG, "beams": True, "scale_GeV": SCALE, "x_update": "difference", "threads": args.threads,
                   "torch": torch.__version__, "jets": source, "runs": args.runs, "warmup": args.warmup,
                   "reference_commit": commit.stdout.strip() or None},
        "identity": identity_check(ref, p4[:16], mask[:16], args.seed),
    }
    out.update(bench(ref, p4, mask, batch=args.batch, train_batch=args.train_batch, runs=args.runs,
                     warmup=args.warmup, seed=args.seed))
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
