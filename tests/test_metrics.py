"""Scores from confusion counts and their intervals when speakers are resampled."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from ser.metrics import paired_speaker_bootstrap, per_speaker_confusion, scores, speaker_bootstrap


def simulated(speakers: int, seed: int = 0, clips: int = 24, classes: int = 4):
    """Predictions whose accuracy varies by speaker, as it does in real corpora."""
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.3, 0.9, speakers)
    labels = np.tile(np.arange(classes), speakers * clips // classes)
    who = np.repeat(np.arange(speakers), clips)
    right = rng.random(len(labels)) < skill[who]
    preds = np.where(right, labels, (labels + rng.integers(1, classes, len(labels))) % classes)
    return preds, labels, [f"s{w:03d}" for w in who]


def test_scores_of_the_counts_are_torchmetrics_scores():
    preds, labels, speakers = simulated(6)
    _, counts = per_speaker_confusion(preds, labels, speakers, 4)
    ours = scores(counts.sum(0))
    p, t = torch.from_numpy(preds), torch.from_numpy(labels)
    assert np.isclose(ours["uar"], MulticlassRecall(4, average="macro")(p, t).item())
    assert np.isclose(ours["war"], MulticlassAccuracy(4, average="micro")(p, t).item())
    assert np.isclose(ours["macro_f1"], MulticlassF1Score(4, average="macro")(p, t).item())


def test_intervals_contain_the_estimate_and_shrink_as_speakers_are_added():
    widths = []
    for speakers in (4, 16, 64):
        preds, labels, who = simulated(speakers, seed=speakers)
        _, counts = per_speaker_confusion(preds, labels, who, 4)
        point = scores(counts.sum(0))
        intervals = speaker_bootstrap(counts, resamples=2000, seed=0)
        for name, (low, high) in intervals.items():
            assert low <= point[name] <= high, (speakers, name, low, point[name], high)
        widths.append(intervals["uar"][1] - intervals["uar"][0])
    assert widths[0] > widths[1] > widths[2], widths
    # Resampling clips instead would ignore that a speaker's clips go together: narrower.
    preds, labels, who = simulated(4, seed=4)
    _, by_clip = per_speaker_confusion(preds, labels, [str(i) for i in range(len(preds))], 4)
    clip_width = np.subtract(*speaker_bootstrap(by_clip, 2000)["uar"][::-1])
    assert clip_width < widths[0]


def test_the_paired_test_finds_a_real_difference_and_none_between_equals():
    preds, labels, who = simulated(20, seed=3)
    _, counts = per_speaker_confusion(preds, labels, who, 4)
    same = paired_speaker_bootstrap(counts, counts.copy(), 2000)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["p"] == 1.0
    # b: a's predictions with one in ten of its right answers made wrong
    worse = np.where((preds == labels) & (np.arange(len(preds)) % 10 == 0), (labels + 1) % 4, preds)
    _, counts_b = per_speaker_confusion(worse, labels, who, 4)
    paired = paired_speaker_bootstrap(counts, counts_b, 2000)
    assert paired["difference"] > 0 and paired["ci95"][0] > 0 and paired["p"] < 0.01
    # Unpaired, the two models' intervals overlap: pairing takes the speakers' spread away.
    a, b = speaker_bootstrap(counts, 2000)["uar"], speaker_bootstrap(counts_b, 2000)["uar"]
    assert b[1] > a[0]
