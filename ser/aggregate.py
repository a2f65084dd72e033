"""Mean ± std of every metric over the runs of a multirun (k folds, seeds, ...).

    ser-aggregate logs/train/multiruns/2026-11-22_10-00-00
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ser import results as results_file
from ser.results import mean_std

METRICS = (*results_file.METRICS, "val/uar_best")


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
