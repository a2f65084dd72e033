"""One owner of normalisation: the front end's. Whatever the front end and its normalisation,
ser-predict given one test speaker's files answers exactly what the test step scored for them;
a lone file is scored with the pooled training statistics the checkpoint keeps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL, predict_cli

TRAIN = [*SMALL, "logger=csv", "trainer.max_epochs=2", "trainer.limit_train_batches=4",
         "trainer.limit_val_batches=1", "callbacks.early_stopping=null"]
# Every front end with every normalisation it offers (model: a small network that reads it).
CASES = {
    "logmel-speaker": ["model=cnn_gru", "features.normalize=speaker"],
    "logmel-utterance": ["model=cnn_gru", "features.normalize=utterance"],
    "logmel-none": ["model=cnn_gru", "features.normalize=none"],
    "mfcc-speaker": ["model=lstm", "features=mfcc", "features.normalize=speaker"],
    "mfcc-utterance": ["model=lstm", "features=mfcc", "features.normalize=utterance"],
    "mfcc-none": ["model=lstm", "features=mfcc", "features.normalize=none"],
    "egemaps-speaker": ["model=egemaps_mlp", "features.normalize=speaker"],
    "egemaps-none": ["model=egemaps_mlp", "features.normalize=none"],
    "encoder-none": ["model=hf"],  # features.name: a tiny random wav2vec 2.0 (below)
}


def read_test_split(run: Path) -> tuple[dict, dict[str, list[dict]]]:
    results = json.loads((run / "results.json").read_text())
    with open(run / "split.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    by_speaker: dict[str, list[dict]] = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(row)
    return results, by_speaker


def confusion_of(clips: list[dict], predicted: list[str], classes: list[str]) -> list[list[int]]:
    counts = [[0] * len(classes) for _ in classes]
    for clip, emotion in zip(clips, predicted):
        counts[classes.index(clip["emotion"])][classes.index(emotion)] += 1
    return counts


def predicted(proc) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["emotion"] for line in proc.stdout.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_ser_predict_on_a_test_speakers_files_answers_as_the_test_step_did(case, train_cli, tiny_encoders,
                                                                            tmp_path):
    extra = [f"features.name={tiny_encoders['wav2vec2']}"] if case.startswith("encoder") else []
    train_cli([*TRAIN, *CASES[case], *extra], tmp_path)
    results, by_speaker = read_test_split(tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert results["tested_ckpt"] == str(ckpt)
    speaker, clips = next(iter(by_speaker.items()))  # one speaker's files: one ser-predict process
    proc = predict_cli("--ckpt", ckpt, *[c["path"] for c in clips])
    answers = predicted(proc)
    assert confusion_of(clips, answers, results["classes"]) == results["per_speaker_confusion"][speaker], case
    with open(tmp_path / "test_predictions.csv", newline="") as handle:  # and clip by clip
        scored = {row["path"]: row["predicted"] for row in csv.DictReader(handle)}
    assert answers == [scored[c["path"]] for c in clips], case
    assert ("taken as one speaker's clips" in proc.stderr) == case.endswith("-speaker")


def test_a_lone_file_is_scored_with_the_pooled_training_statistics_and_enrolment_gives_the_speakers_own(
        train_cli, tmp_path):
    train_cli([*TRAIN, "model=cnn_gru", "trainer.max_epochs=2"], tmp_path)
    results, by_speaker = read_test_split(tmp_path)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    speaker, clips = next(iter(by_speaker.items()))
    together = predicted(predict_cli("--ckpt", ckpt, *[c["path"] for c in clips]))

    alone = predict_cli("--ckpt", ckpt, clips[0]["path"])
    assert alone.returncode == 0 and len(predicted(alone)) == 1
    warnings = [line for line in alone.stderr.splitlines() if "pooled statistics" in line]
    assert len(warnings) == 1 and "costs accuracy" in warnings[0]

    # Enrolled from the speaker's files, the lone file is standardised as it was among them.
    enrolled = predict_cli("--ckpt", ckpt, clips[0]["path"], "--speaker-stats", *[c["path"] for c in clips])
    # Equal to the printed precision (1e-6): the two calls batch the file with different
    # company, which can move the last bit of a float and so the last printed digit.
    among = json.loads(predict_cli("--ckpt", ckpt, *[c["path"] for c in clips]).stdout.splitlines()[0])["probs"]
    assert json.loads(enrolled.stdout)["probs"] == pytest.approx(among, abs=1.01e-6)
    assert predicted(enrolled) == together[:1]


def test_the_checkpoint_keeps_the_pooled_statistics_of_the_training_speakers(compose_cfg, train_cli, tmp_path):
    """The fallback statistics are the training speakers' frames pooled, nothing of the
    validation or test speakers; and a waveform through the model is standardised by them."""
    from hydra.utils import instantiate

    from ser.data.cache import FeatureCache, WaveformCache
    from ser.module import SERModule

    train_cli([*TRAIN, "model=cnn_gru", "trainer.max_epochs=1"], tmp_path)
    with open(tmp_path / "split.csv", newline="") as handle:
        train_paths = [r["path"] for r in csv.DictReader(handle) if r["split"] == "train"]
    module = SERModule.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    cfg = compose_cfg([*TRAIN, "model=cnn_gru"])
    frontend = instantiate(cfg.model).frontend
    waveforms = WaveformCache.open(train_paths, 16000, cfg.data.cache_dir)
    mel = np.concatenate([FeatureCache.open(waveforms, frontend.frozen_stage(), cfg.data.cache_dir)[p]
                          for p in train_paths]).astype(np.float64)  # [frames, n_mels]
    pooled = module.frontend.pooled
    assert pooled.known and int(pooled.frames) == len(mel)
    np.testing.assert_allclose(pooled.mean.numpy(), mel.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pooled.std.numpy(), mel.std(0) + 1e-5, rtol=1e-7)

    wave = torch.from_numpy(waveforms[train_paths[0]])[None]
    feats, frames = module.frontend(wave, torch.tensor([wave.shape[1]]))
    expected = (module.frontend.log_mel(wave, torch.tensor([wave.shape[1]]))[0].double()
                - pooled.mean[:, None]) / pooled.std[:, None]
    torch.testing.assert_close(feats, expected.float())
