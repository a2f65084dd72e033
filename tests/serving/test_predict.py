"""ser-predict's batching: what a file is answered does not depend on how many files are scored
together, in which order, or how they are cut into batches and into the chunks that are decoded
while the previous one is scored (a per-speaker model gathers its statistics over every chunk)."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ser.frontends.normalize import SpeakerStatistics
from ser.serving.predict import predict
from ser.serving.runtime import CheckpointModel

RATE = 16000
# Seconds: shorter than one STFT window, a few windows' worth, either side of the 10 s window.
SECONDS = [0.05, 0.15, 0.5, 1.3, 2.2, 3.0, 4.4, 9.9, 10.0, 10.05, 12.5, 21.0]


def voice_like(seconds: float, seed: int) -> np.ndarray:
    """Noise through a moving level: every clip different, its loudness changing over time."""
    generator = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.1 * generator.standard_normal(len(t)) * (1.2 + np.sin(2 * np.pi * (1 + seed) * t))).astype(np.float32)


def answers_by_file(lines: list[dict]) -> dict[str, tuple[list, np.ndarray]]:
    return {line["path"]: ([(w["start"], w["end"]) for w in line["windows"]],
                           np.array([[v for v in w["probs"].values()] for w in line["windows"]]))
            for line in lines}


def test_a_files_answer_does_not_depend_on_order_batches_or_chunks(build, tmp_path):
    files = []
    for k, seconds in enumerate(SECONDS):
        files.append(tmp_path / f"clip{k:02d}.wav")
        sf.write(files[-1], voice_like(seconds, k), RATE, subtype="PCM_16")
    unreadable = tmp_path / "broken.wav"
    unreadable.write_bytes(b"RIFF, but no audio")
    files.append(unreadable)

    per_speaker, _ = build("cnn_gru", ["features.normalize=speaker"])
    width = per_speaker.frontend.pooled.mean.numel()  # as training hands them over
    per_speaker.frontend.pooled.remember(SpeakerStatistics(np.zeros(width), np.ones(width)), 1.0)
    per_utterance, _ = build("cnn", ["features.normalize=utterance"])
    models = [CheckpointModel(per_speaker.eval()), CheckpointModel(per_utterance.eval())]
    # All files in one batch and one chunk.
    expected = [answers_by_file(list(predict(m, files, batch_size=64, chunk_batches=64))) for m in models]
    assert all(len(e) == len(SECONDS) for e in expected)

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.permutations(range(len(files))), st.integers(1, 6), st.integers(1, 3))
    def the_same_answers(order, batch_size, chunk_batches):
        shuffled = [files[i] for i in order]
        for model, answers in zip(models, expected):
            skipped = []
            lines = list(predict(model, shuffled, batch_size=batch_size, chunk_batches=chunk_batches, skipped=skipped))
            assert skipped == [unreadable]
            assert [line["path"] for line in lines] == [str(f) for f in shuffled if f != unreadable]  # files' order
            for path, (spans, probs) in answers_by_file(lines).items():
                assert spans == answers[path][0]
                np.testing.assert_allclose(probs, answers[path][1], atol=1e-5)

    the_same_answers()
