"""ser-fuse: one answer from several runs that scored the same test clips (late fusion).

    ser-fuse RUN_DIR RUN_DIR [...] OUT_DIR [--weights mean|validation]

Runs fuse only when their split files are byte-identical (checked by digest): the same
speakers in the same splits, so that every member was validated and tested on the same
clips. Each clip's answer is the mean of the members' class probabilities (attributes: of
their values), or a mean weighted by each member's best validation headline
(``--weights validation``). The fusion is scored as a run's test is (the task's metrics,
per-speaker scores, intervals over speakers) into ``OUT_DIR/results.json`` of the same
schema, with ``test_predictions.csv`` and ``split.csv`` beside it, and, for categories, the
paired bootstrap over speakers of the fusion against each member (``ser.metrics``).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from ser.data.splits import SPLIT_FILE
from ser.errors import UserError
from ser.evidence import results as results_file
from ser.metrics import paired_speaker_bootstrap
from ser.tasks import build_task

WEIGHTINGS = ("mean", "validation")


class FusionRefused(UserError):
    pass


def split_digest(run: Path) -> str:
    path = run / SPLIT_FILE
    if not path.is_file():
        raise FusionRefused(f"{run} has no {SPLIT_FILE}: give run folders that train.py wrote")
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_same_split(runs: list[Path]) -> str:
    digests = {run: split_digest(run) for run in runs}
    if len(set(digests.values())) > 1:
        first = runs[0]
        other = [str(r) for r in runs if digests[r] != digests[first]]
        raise FusionRefused(
            f"ser-fuse combines runs that scored the same clips, but the split file of {', '.join(other)} differs "
            f"from that of {first} (digests of {SPLIT_FILE}). Their test speakers or clips are not the same, so "
            "their answers cannot be averaged clip by clip or compared speaker by speaker. Train the members with "
            "the same data config and split (data.split, data.seed, data.fold, or one data.split_file).")
    return digests[runs[0]]


def weights_of(members: list[dict], weighting: str) -> list[float]:
    if weighting not in WEIGHTINGS:
        raise FusionRefused(f"--weights {weighting!r}: one of {', '.join(WEIGHTINGS)}")
    if weighting == "mean":
        return [1.0 / len(members)] * len(members)
    key = results_file.headline(members[0]).replace("test/", "val/") + "_best"
    scores = [m.get(key) for m in members]
    if any(s is None or not s > 0 for s in scores):
        raise FusionRefused(f"--weights validation weighs each run by its {key}, which "
                            f"{'is not positive' if all(s is not None for s in scores) else 'is missing'} in "
                            "one of them (a run scored with train=false has none): use --weights mean")
    return [s / sum(scores) for s in scores]


def member_predictions(run: Path, task, paths: list[str] | None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """A member's answers, in the order of ``paths`` (the first member's; models batch their test
    clips in orders of their own)."""
    rows = results_file.read_predictions(run)
    if not rows:
        raise FusionRefused(f"{run} has no {results_file.PREDICTIONS}: its test did not run or wrote nothing")
    if paths is not None:
        by_path = {r["path"]: r for r in rows}
        if len(by_path) != len(rows) or by_path.keys() != set(paths):
            raise FusionRefused(f"{run} answered other test clips than the first run although its split file is "
                                "the same: a limited test (trainer.limit_test_batches)? Fuse runs that tested "
                                "their whole split.")
        rows = [by_path[p] for p in paths]
    try:
        outputs, targets = task.outputs_from_columns(rows)
    except (KeyError, ValueError) as err:
        raise FusionRefused(f"{run}'s {results_file.PREDICTIONS}: {err}") from None
    return outputs, targets, rows


def fuse(runs: list[str | Path], out: str | Path, weighting: str = "mean", resamples: int = 1000,
         seed: int = 0) -> dict:
    """Fuse the test answers of ``runs`` into ``out``; returns the fusion's results."""
    runs, out = [Path(r) for r in runs], Path(out)
    if len(runs) < 2:
        raise FusionRefused("ser-fuse needs at least two run folders to combine, and the output folder last")
    digest = check_same_split(runs)
    members = [results_file.read(run / results_file.FILE) for run in runs]
    first = members[0]
    if any((m.get("task"), m.get("classes"), m.get("attributes")) != (first.get("task"), first.get("classes"),
                                                                       first.get("attributes")) for m in members):
        raise FusionRefused("ser-fuse combines runs of the same task over the same classes; "
                            + "; ".join(f"{r}: {m.get('task')} {m.get('classes') or m.get('attributes')}"
                                        for r, m in zip(runs, members)))
    task = build_task({"name": first["task"]}, first.get("classes") or [])
    weights = weights_of(members, weighting)
    outputs, paths = [], None
    for run in runs:
        answer, targets, rows = member_predictions(run, task, paths)
        outputs.append(answer)
        paths = paths or [r["path"] for r in rows]
    fused = task.fuse(outputs, weights)
    results = scored(task, fused, targets, [r["speaker"] for r in rows], resamples, seed)
    results["fusion"] = {"members": [str(r) for r in runs], "weighting": weighting, "weights": weights,
                         "split_digest": digest, "paired": paired(results, members, runs, resamples, seed)}
    results |= {"model": "fusion(" + ", ".join(str(m.get("model")) for m in members) + ")",
                **{k: first[k] for k in ("data", "corpus", "split", "protocol", "fold", "seed", "n_train", "n_val",
                                         "test_clips", "scale") if k in first}}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runs[0] / SPLIT_FILE, out / SPLIT_FILE)
    results_file.write_predictions(out, [(r["path"], r["speaker"]) for r in rows], task.prediction_columns(fused, targets))
    results_file.write(results, out)
    return results


def scored(task, outputs: np.ndarray, targets: np.ndarray, speakers: list[str], resamples: int, seed: int) -> dict:
    """The fused answers scored as a run's test scores them: the task's metrics, its record and
    per-speaker scores with their intervals."""
    task.start_test()
    out, tgt = torch.from_numpy(outputs).float(), torch.from_numpy(targets)
    task.update("test", out, tgt)
    task.record(out, tgt)
    metrics = {k: float(v) for k, v in task.metrics("test").compute().items()}
    return results_file.build({**dict(sorted(metrics.items())), **task.test_record(), "n_test": len(outputs),
                               **task.by_speaker(speakers, resamples, seed)}, {}, {})


def paired(fusion: dict, members: list[dict], runs: list[Path], resamples: int, seed: int) -> dict:
    """The fusion's UAR minus each member's, paired over the same speakers (categories only)."""
    if any("per_speaker_confusion" not in r for r in (fusion, *members)):  # attributes; or a run tested on many GPUs
        return {}
    speakers = sorted(fusion["per_speaker_confusion"])
    ours = np.array([fusion["per_speaker_confusion"][s] for s in speakers])
    return {str(run): paired_speaker_bootstrap(ours, np.array([member["per_speaker_confusion"][s] for s in speakers]),
                                               resamples, seed)
            for run, member in zip(runs, members)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="two or more run folders, then the output folder")
    parser.add_argument("--weights", default="mean", choices=WEIGHTINGS,
                        help="mean: equal weights; validation: each run by its best validation headline")
    parser.add_argument("--bootstrap", type=int, default=1000, help="speaker resamples for intervals and paired tests")
    args = parser.parse_args(argv)
    try:
        results = fuse(args.folders[:-1], args.folders[-1], args.weights, args.bootstrap)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    head = results_file.headline(results)
    print(f"{head} of the fusion: {results_file.score_text(results, head)}")
    for run, test in results["fusion"]["paired"].items():
        low, high = test["ci95"]
        print(f"  - {run}: {test['difference']:+.3f} UAR [{low:+.3f}, {high:+.3f}], p = {test['p']:.3f}")
    print(f"written to {args.folders[-1]}")


if __name__ == "__main__":
    main()
