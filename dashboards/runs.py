"""``python -m dashboards.runs``: an experiment's trial runs as the typed table every dashboard reads
(:class:`dashboards.data.RunSet`), written as ``runs.parquet`` and ``runs.csv``."""

from __future__ import annotations

from collections.abc import Sequence

from dashboards import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Load (and cache) the runs, print what was found, write runs.parquet/csv."""
    p = cli.parser("data", "Load an experiment's trial runs from MLflow into a typed table (Parquet cache).")
    args = p.parse_args(argv)
    rs = cli.load(args)
    out = cli.out_dir(args, "data")
    counts = rs.runs.groupby([c for c in ("tags.sweep_id", "outcome") if c in rs.runs], dropna=False).size()
    print(counts.to_string())
    rs.runs.to_parquet(out / "runs.parquet", index=False)
    rs.runs.to_csv(out / "runs.csv", index=False)
    print(
        f"wrote {out / 'runs.parquet'} and {out / 'runs.csv'} ({len(rs.runs)} runs, {len(rs.runs.columns)} columns)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
