"""Emotion attributes on speakers never heard: the built-in corpus's arousal, valence and
dominance (rated from each clip's emotion and how strongly it was acted), 4 speaker folds.

For each model (the default eGeMAPS MLP and the CNN-GRU) every fold trains three times with
train.py's own code (``ser.experiment.train.run``; the next fold validates): ``task=categorical`` (the
baseline of this run), ``task=attributes`` and ``task=both``. Prints the CCC of each attribute
and their mean (mean +- std over folds), and the categorical UAR of ``task=both`` against
``task=categorical`` on the same folds as a difference and a ratio.

    python benchmarks/attributes.py                      # both models, 4 folds
    python benchmarks/attributes.py --models egemaps_mlp --folds 4
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from generalisation import ser_fold

from common import machine

MODELS = {"egemaps_mlp": [], "cnn_gru": ["model=cnn_gru"]}
TASKS = ("categorical", "attributes", "both")
ATTRIBUTE_KEYS = ("test/ccc_arousal", "test/ccc_valence", "test/ccc_dominance", "test/ccc")


def mean_std(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None, help="caches and runs (default: a temporary folder)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    work = args.work or Path(tempfile.mkdtemp(prefix="ser-attributes-"))
    source = ["data=synthetic", f"paths.cache_dir={work / 'cache'}"]
    print(f"# attributes on the built-in corpus, {args.folds} speaker folds; {machine()}")
    table = {}
    for model in args.models:
        scores = {task: [] for task in TASKS}
        began = time.monotonic()
        for fold in range(args.folds):
            for task in TASKS:
                out = work / model / task / str(fold)
                scores[task].append(ser_fold(source, [*MODELS[model], f"task={task}"], fold, args.folds, out))
        table[model] = scores
        print(f"\n## {model} ({time.monotonic() - began:.0f} s)")
        print("| task | " + " | ".join(k[5:] for k in ATTRIBUTE_KEYS) + " | UAR |")
        print("|---|" + "---:|" * (len(ATTRIBUTE_KEYS) + 1))
        for task in TASKS:
            runs = scores[task]
            ccc = [mean_std([r[k] for r in runs]) if k in runs[0] else "—" for k in ATTRIBUTE_KEYS]
            uar = mean_std([r["test/uar"] for r in runs]) if "test/uar" in runs[0] else "—"
            print(f"| {task} | " + " | ".join(ccc) + f" | {uar} |")
        both = np.array([r["test/uar"] for r in scores["both"]])
        alone = np.array([r["test/uar"] for r in scores["categorical"]])
        print(f"task=both vs task=categorical, UAR on the same folds: difference {np.mean(both - alone):+.3f} "
              f"(per fold {', '.join(f'{d:+.3f}' for d in both - alone)}), ratio {both.mean() / alone.mean():.3f}")
    summary = {model: {task: [{k: v for k, v in r.items() if k.startswith("test/") and not k.endswith("ci95")}
                              for r in runs] for task, runs in scores.items()} for model, scores in table.items()}
    (work / "attributes.json").write_text(json.dumps(summary, indent=1))
    print(f"\nevery fold's scores: {work / 'attributes.json'}")


if __name__ == "__main__":
    main()
