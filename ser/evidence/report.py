"""One report for a run folder or a multirun/sweep folder: report.md and a self-contained report.html.

    ser-report logs/train/multiruns/2026-12-02_10-00-00_1234-ab12

Reads every ``results.json`` below the folder: a table of runs (model and corpus by their
config names, protocol, test UAR with its speaker interval, WAR, macro F1, epochs, wall time),
the runs that differ only by seed grouped with mean ± std, a bar chart of UAR with intervals,
the confusion matrices side by side, a paired bootstrap over speakers for every two runs
scored on the same test clips, and the cross-corpus grid when the runs have one. The HTML
holds its figures inline (no server, no network): it opens in any browser and can be mailed.
"""

from __future__ import annotations

import argparse
import base64
import html
import itertools
from pathlib import Path

import numpy as np

from ser.data.emotions import ATTRIBUTES
from ser.evidence import results as results_file
from ser.evidence.grid import cell_text, grid_markdown, write_grid
from ser.evidence.results import mean_std, with_interval
from ser.metrics import paired_speaker_bootstrap

PAIRED_RESAMPLES = 2000


def load_runs(folder: Path) -> list[dict]:
    runs = [{**results, "folder": str(path.parent.relative_to(folder)) or "."}
            for path, results in results_file.find(folder)]
    if not runs:
        raise SystemExit(f"error: no results.json below {folder}: point ser-report at a run or multirun folder")
    return runs


def label(run: dict) -> str:
    return f"{run['model']} / {run['data']} / seed {run.get('seed')} ({run['folder']})"


def run_rows(runs: list[dict]) -> list[list[str]]:
    def seconds(run):
        return f"{run['wall_seconds']:.0f} s" if run.get("wall_seconds") is not None else "—"

    def score(run, key):
        return f"{run[key]:.3f}" if key in run else "—"

    def attributes(run):
        return " / ".join(score(run, f"test/ccc_{name}") for name in ATTRIBUTES) if "test/ccc" in run else "—"

    return [[run["folder"], run["model"], run["data"], f"{run['split']} ({run['protocol']})",
             run.get("task", "categorical"), str(run.get("seed")),
             f"{results_file.headline(run)[5:]} {with_interval(run[results_file.headline(run)], run.get(results_file.headline(run) + '_ci95'))}",
             score(run, "test/war"), score(run, "test/macro_f1"), attributes(run),
             str(run.get("epochs", "—")), seconds(run)] for run in runs]


RUN_COLUMNS = ["run", "model", "corpus", "split (protocol)", "task", "seed", "headline [95% CI]", "WAR", "macro F1",
               "CCC arousal / valence / dominance", "epochs", "wall time"]


def seed_groups(runs: list[dict]) -> list[list[str]]:
    """Runs of the same model, corpus and protocol (seeds, folds): mean ± std of each score."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["data"], run["split"], run.get("task", "categorical")), []).append(run)
    rows = []
    for (model, data, split, _task), members in groups.items():
        seeds = ", ".join(str(m.get("seed")) for m in members)
        headline, *others = results_file.metrics_of(members[0])
        rows.append([model, data, split, str(len(members)), seeds, spread([m[headline] for m in members]),
                     "; ".join(f"{key[5:]} {spread([m[key] for m in members])}" for key in others)])
    return rows


def spread(values: list[float]) -> str:
    return "{:.3f} ± {:.3f}".format(*mean_std(values))


GROUP_COLUMNS = ["model", "corpus", "split", "runs", "seeds", "headline (mean ± std)", "other test scores"]


def paired_rows(runs: list[dict]) -> list[list[str]]:
    """Every two runs scored on the same test clips and classes: UAR(a) - UAR(b), with its
    95% interval and two-sided p from resampling the shared test speakers (one draw for both)."""
    rows = []
    for a, b in itertools.combinations(runs, 2):
        if not (a.get("test_clips") and a.get("test_clips") == b.get("test_clips") and a["classes"] == b["classes"]
                and a.get("per_speaker_confusion") and b.get("per_speaker_confusion")):
            continue
        speakers = sorted(a["per_speaker_confusion"])
        test = paired_speaker_bootstrap(np.array([a["per_speaker_confusion"][s] for s in speakers]),
                                        np.array([b["per_speaker_confusion"][s] for s in speakers]),
                                        PAIRED_RESAMPLES, seed=0)
        low, high = test["ci95"]
        rows.append([label(a), label(b), f"{test['difference']:+.3f}", f"[{low:+.3f}, {high:+.3f}]",
                     f"{test['p']:.3f}", str(len(speakers))])
    return rows


PAIRED_COLUMNS = ["run a", "run b", "UAR a − b", "95% CI", "p (two-sided)", "test speakers"]


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(columns: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def confusion_figures(folder: Path, runs: list[dict]) -> list[tuple[str, Path]]:
    """Each run's confusion matrix figure; where the file is gone, drawn again from its counts
    into the report's folder (report.md links to it)."""
    from ser.evidence.plots import save_confusion_matrix

    figures = []
    for i, run in enumerate(runs):
        if "confusion_matrix" not in run:
            continue
        path = folder / run["folder"] / "confusion_matrix.png"
        if not path.is_file():
            path = folder / f"report_confusion_{i}.png"
            save_confusion_matrix(np.asarray(run["confusion_matrix"]), run["classes"], path,
                                  title=f"{run['model']} on {run['data']}: test UAR {run['test/uar']:.3f}")
        figures.append((label(run), path))
    return figures


def attribute_figures(folder: Path, runs: list[dict]) -> list[tuple[str, Path]]:
    """Predicted against true, per attribute, of each run that has attributes (drawn again
    from its test_predictions.csv where the figure is gone)."""
    from ser.evidence.plots import save_attribute_scatter

    figures = []
    for i, run in enumerate(runs):
        path = folder / run["folder"] / "attributes.png"
        rows = results_file.read_predictions(folder / run["folder"]) if "attributes" in run else []
        if not rows:
            continue
        if not path.is_file():
            path = folder / f"report_attributes_{i}.png"
            names = run["attributes"]
            save_attribute_scatter([[float(r[f"true_{n}"]) for n in names] for r in rows],
                                   [[float(r[f"predicted_{n}"]) for n in names] for r in rows], names, path,
                                   title=f"{run['model']} on {run['data']}: test CCC {run['test/ccc']:.3f}")
        figures.append((label(run), path))
    return figures


def write_report(folder: str | Path) -> tuple[Path, Path]:
    """report.md (figures beside it) and report.html (figures inline) in ``folder``."""
    from ser.evidence.plots import save_uar_bars

    folder = Path(folder)
    runs = load_runs(folder)
    bars = folder / "report_uar.png"
    headlines = [results_file.headline(r) for r in runs]
    save_uar_bars([f"{r['model']}/{r['data']}/{r.get('seed')}" for r in runs], [r[h] for r, h in zip(runs, headlines)],
                  [r.get(f"{h}_ci95") for r, h in zip(runs, headlines)], bars,
                  chance=[results_file.chance(r) for r in runs])
    grid = write_grid(folder)  # also what a multirun writes at its end: cross_corpus.json/.md/.png
    heatmaps = [(model, folder / f"cross_corpus_{model}.png") for model in grid]
    sections = [
        ("Runs", RUN_COLUMNS, run_rows(runs), "runs"),
        ("Grouped over seeds (mean ± std)", GROUP_COLUMNS, seed_groups(runs), "groups"),
        ("Paired comparisons on the same test clips (bootstrap over speakers)", PAIRED_COLUMNS,
         paired_rows(runs), "paired"),
    ]
    galleries = {"Confusion matrices": confusion_figures(folder, runs),
                 "Attributes: predicted against true": attribute_figures(folder, runs)}
    galleries = {title: figures for title, figures in galleries.items() if figures}
    (folder / "report.md").write_text(markdown_report(folder, runs, sections, bars, galleries, grid, heatmaps))
    (folder / "report.html").write_text(html_report(folder, runs, sections, bars, galleries, grid, heatmaps))
    return folder / "report.md", folder / "report.html"


def intro(folder: Path, runs: list[dict]) -> str:
    return (f"{len(runs)} run(s) below {folder}. UAR is unweighted average recall, CCC the concordance "
            "correlation coefficient of an attribute; intervals are 95% percentile intervals from "
            "resampling test speakers with replacement.")


def markdown_report(folder, runs, sections, bars, galleries, grid, heatmaps) -> str:
    parts = [f"# ser report: {folder.name}", "", intro(folder, runs), ""]
    for title, columns, rows, _ in sections:
        parts += [f"## {title}", "", markdown_table(columns, rows) if rows else "(none)", ""]
    parts += ["## Test scores", "", f"![headline test score with 95% intervals]({bars.name})", ""]
    for title, figures in galleries.items():
        parts += [f"## {title}", "", *(f"![{name}]({path.relative_to(folder)})" for name, path in figures), ""]
    if grid:
        parts += ["", "## Cross-corpus", "", grid_markdown(grid)]
        parts += [f"![{model}]({path.name})" for model, path in heatmaps]
    return "\n".join(parts) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}td{text-align:right}td:first-child{text-align:left}
th{background:#f0f0f0}.figures{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
.figures figure{margin:0;width:26em}.figures img{width:100%}figcaption{font-size:.8em}"""


def html_report(folder, runs, sections, bars, galleries, grid, heatmaps) -> str:
    def figure(name, path):
        return (f'<figure><img src="{inline_png(path)}" alt="{html.escape(name)}">'
                f"<figcaption>{html.escape(name)}</figcaption></figure>")

    body = [f"<h1>ser report: {html.escape(folder.name)}</h1>", f"<p>{html.escape(intro(folder, runs))}</p>"]
    for title, columns, rows, table_id in sections:
        body += [f"<h2>{html.escape(title)}</h2>", html_table(columns, rows, table_id) if rows else "<p>(none)</p>"]
    body += ["<h2>Test scores</h2>", f'<div class="figures">{figure("headline test score with 95% intervals", bars)}</div>']
    for title, figures in galleries.items():
        body += [f"<h2>{html.escape(title)}</h2>", '<div class="figures">' + "".join(figure(*f) for f in figures) + "</div>"]
    if grid:
        body.append("<h2>Cross-corpus</h2>")
        for model, g in grid.items():
            rows = [[train, *map(cell_text, row)] for train, row in zip(g["train"], g["cells"])]
            body.append(html_table(["trained on \\ tested on", *g["test"]], rows, f"grid-{model}"))
        body.append('<div class="figures">' + "".join(figure(*h) for h in heatmaps) + "</div>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ser report: {html.escape(folder.name)}'
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a run folder, or a multirun/sweep folder (searched recursively)")
    args = parser.parse_args(argv)
    md, page = write_report(args.folder)
    print(f"wrote {md} and {page}")


if __name__ == "__main__":
    main()
