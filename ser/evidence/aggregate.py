"""Mean ± std of every metric over the runs of a multirun (k folds, seeds, ...).

    ser-aggregate logs/train/multiruns/2026-11-22_10-00-00
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from ser.evidence import results as results_file
from ser.evidence.results import mean_std, with_interval

METRICS = (*results_file.CATEGORICAL_METRICS, *results_file.ATTRIBUTE_METRICS, "val/uar_best", "val/ccc_best")


def aggregate(folder: str | Path) -> dict:
    found = results_file.find(folder)
    if not found:
        raise SystemExit(f"error: no results.json below {folder}")
    runs = [results for _, results in found]
    summary = {"runs": len(runs), "folders": [str(path.parent) for path, _ in found]}
    for key in METRICS:
        values = [r[key] for r in runs if key in r]
        if values:
            mean, std = mean_std(values)
            summary[key] = {"mean": mean, "std": std, "values": values}
    return summary


def fold_table(folder: str | Path) -> str | None:
    """The table of a multirun over folds (``data.fold=0,1,2,3,4``: IEMOCAP's sessions, k-fold):
    one row per fold (its test session, clips, scores with their speaker intervals) and the mean
    ± std over folds, in markdown; None when the runs below ``folder`` are not one model's folds."""
    runs = [r for _, r in results_file.find(folder) if r.get("fold") is not None]
    if len(runs) < 2 or len({(r["model"], r["data"], r.get("task")) for r in runs}) != 1 \
            or len({r["fold"] for r in runs}) != len(runs):
        return None
    runs.sort(key=lambda r: r["fold"])
    keys = results_file.metrics_of(runs[0])
    lines = [f"**{runs[0]['model']} on {runs[0]['data']}**, {len(runs)} folds ({runs[0]['split']}): test scores "
             "[95% interval, speakers resampled]", "",
             "| fold | tested on | clips | " + " | ".join(k[5:] for k in keys) + " |", "|---|---|---:|" + "---:|" * len(keys)]
    for r in runs:
        lines.append(f"| {r['fold']} | {r.get('test_group') or '—'} | {r.get('n_test', '—')} | "
                     + " | ".join(with_interval(r[k], r.get(f"{k}_ci95")) for k in keys) + " |")
    spreads = [mean_std([r[k] for r in runs]) for k in keys]
    lines.append("| **mean ± std** | | | " + " | ".join(f"**{m:.3f} ± {s:.3f}**" for m, s in spreads) + " |")
    return "\n".join(lines) + "\n"


class FoldTable(Callback):
    """Hydra callback (conf/hydra/default.yaml): at the end of a multirun over folds, print the
    fold table with mean ± std and write it to ``folds.md`` in the sweep folder. Other
    multiruns: nothing."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        table = fold_table(config.hydra.sweep.dir)
        if table is None:
            return
        (Path(config.hydra.sweep.dir) / "folds.md").write_text(table)
        Console().print(Markdown(table))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a multirun folder (searched recursively for results.json)")
    args = parser.parse_args(argv)
    summary = aggregate(args.folder)
    (Path(args.folder) / "aggregate.json").write_text(json.dumps(summary, indent=2))
    table = Table(title=f"{summary['runs']} runs in {args.folder}")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for key in METRICS:
        if key in summary:
            table.add_row(key, f"{summary[key]['mean']:.4f} ± {summary[key]['std']:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()
