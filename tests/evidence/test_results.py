"""results.json has one owner (ser/evidence/results.py) and the task decides what a test records."""

from __future__ import annotations

import json

import pytest
import torch

from ser.evidence import results
from ser.tasks import CategoricalTask


def test_results_are_written_read_and_found_through_one_module(tmp_path):
    for job in ("10", "2", "1"):
        (tmp_path / job).mkdir()
        results.write(results.build({"test/uar": 0.5, "classes": ["a", "b"]}, {"model": "cnn", "data": job},
                                    {"epochs": 3}), tmp_path / job)
    found = results.find(tmp_path)
    assert [r["data"] for _, r in found] == ["1", "2", "10"]  # job folders in numeric order
    assert all(r["schema"] == results.SCHEMA and r["epochs"] == 3 for _, r in found)

    old = tmp_path / "old" / "results.json"  # written before the schema was recorded
    old.parent.mkdir()
    old.write_text(json.dumps({"test/uar": 0.4}))
    assert results.read(old)["task"] == "categorical"
    newer = tmp_path / "newer" / "results.json"
    newer.parent.mkdir()
    newer.write_text(json.dumps({"schema": results.SCHEMA + 1}))
    with pytest.raises(results.ResultsError, match="update ser"):
        results.read(newer)


def test_scores_are_formatted_with_their_interval_or_the_reason_for_none():
    assert results.with_interval(0.51234, [0.4, 0.6]) == "0.512 [0.400, 0.600]"
    assert results.mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213562))
    lone = {"test/uar": 0.5, "bootstrap": {"skipped": "1 test speaker, too few to resample"}}
    assert results.score_text(lone, "test/uar") == "0.500 (no interval: 1 test speaker, too few to resample)"


def scored_task(speakers: list[str]) -> CategoricalTask:
    task = CategoricalTask(["anger", "neutral"])
    task.start_test()
    targets = torch.tensor([0, 1] * (len(speakers) // 2))
    task.record(torch.nn.functional.one_hot(targets, 2).float(), targets)  # outputs: every clip right
    return task


def test_one_test_speaker_gets_no_interval_of_zero_width_and_says_why():
    """TESS's speaker split tests on one speaker: resampling it gives the same score every
    time, an interval of zero width that claims a certainty nobody has."""
    one = scored_task(["OAF"] * 6).by_speaker(["OAF"] * 6, resamples=200, seed=0)
    assert "test/uar_ci95" not in one and "1 test speaker" in one["bootstrap"]["skipped"]
    assert one["per_speaker_uar"] == {"OAF": 1.0}
    two = scored_task(["OAF", "YAF"] * 3).by_speaker(["OAF", "YAF"] * 3, resamples=200, seed=0)
    assert two["bootstrap"]["speakers"] == 2 and len(two["test/uar_ci95"]) == 2


def test_the_task_sizes_the_head_and_owns_loss_and_class_weights():
    task = CategoricalTask(["anger", "happiness", "sadness"], class_weights="balanced")
    assert task.output_size == 3
    task.weigh_classes([10, 30, 60])
    torch.testing.assert_close(task.class_weight, torch.tensor([100 / 30, 100 / 90, 100 / 180]))
    outputs, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = torch.nn.functional.cross_entropy(outputs, targets, weight=task.class_weight)
    torch.testing.assert_close(task.loss(outputs, targets), expected)
