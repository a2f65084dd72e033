from __future__ import annotations

import numpy as np
import soundfile as sf

from ser.data import CremaD, Synthetic
from ser.data.synthetic import PROSODY, make_voice, synthesize


def test_generation_is_deterministic_by_seed_and_uses_crema_d_naming(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Synthetic(num_speakers=3, num_sentences=2, seed=5).prepare(a)
    Synthetic(num_speakers=3, num_sentences=2, seed=5).prepare(b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(files_a) == 3 * 6 * 2
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    for rel in files_a[:5]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    clips, skipped = Synthetic(num_speakers=3, num_sentences=2, seed=5).scan(a)
    assert not skipped and len(clips) == 36
    assert all(CremaD().parse(__import__("pathlib").Path(c.path)) == (c.speaker, c.emotion) for c in clips)
    info = sf.info(clips[0].path)
    assert info.samplerate == 16000 and info.subtype == "PCM_16"


def test_other_seed_gives_other_audio(tmp_path):
    Synthetic(num_speakers=3, num_sentences=1, seed=1).prepare(tmp_path)
    Synthetic(num_speakers=3, num_sentences=1, seed=2).prepare(tmp_path)
    folders = sorted(tmp_path.glob("v2-*"))
    assert len(folders) == 2
    name = "AudioWAV/1001_IEO_ANG_XX.wav"
    assert (folders[0] / name).read_bytes() != (folders[1] / name).read_bytes()


def test_emotions_differ_in_prosody_the_way_acted_emotions_do():
    voice = make_voice(0, 0)

    def pitch_and_rate(emotion):
        clips = [synthesize(voice, emotion, np.random.default_rng(i), 16000) for i in range(6)]
        return np.median([pitch(c) for c in clips]), np.mean([len(c) for c in clips])

    anger, sad = pitch_and_rate("ANG"), pitch_and_rate("SAD")
    assert anger[0] > 1.15 * sad[0]  # higher pitch
    assert anger[1] < sad[1]  # faster
    assert set(PROSODY) == set(CremaD.labels)


def pitch(x, rate=16000):
    """YIN pitch estimate (Hz) of the loudest 64 ms of a clip."""
    n, lo, hi = 1024, rate // 500, rate // 60
    energy = np.convolve(x ** 2, np.ones(n + hi), mode="valid")
    start = int(np.argmax(energy))
    frame = x[start : start + n + hi].astype(np.float64)
    diff = np.array([np.sum((frame[:n] - frame[lag : lag + n]) ** 2) for lag in range(hi)])
    cmnd = diff[1:] * np.arange(1, hi) / np.maximum(np.cumsum(diff[1:]), 1e-12)
    below = np.nonzero(cmnd[lo:] < 0.2)[0]
    lag = lo + (below[0] if len(below) else int(np.argmin(cmnd[lo:])))
    return rate / (lag + 1)


def test_intensities_follow_crema_d_design_and_size(tmp_path):
    full = Synthetic(num_speakers=91, num_sentences=12, intensities=True)
    assert len(full.utterances()) == 91 * (11 * 6 + 1 + 5 * 3)  # IEO: neutral XX, others LO/MD/HI
    cremad = Synthetic(num_speakers=91, num_sentences=12, intensities=True, num_clips=7442)
    kept = cremad.utterances()
    assert len(kept) == 7442 and len({speaker for speaker, *_ in kept}) == 91

    Synthetic(num_speakers=3, num_sentences=1, intensities=True, syllables=(3, 4)).prepare(tmp_path)
    names = sorted(p.stem for p in tmp_path.rglob("*.wav"))
    assert len(names) == 3 * 16
    assert "1001_IEO_NEU_XX" in names and "1001_IEO_ANG_XX" not in names
    assert {"1001_IEO_ANG_LO", "1001_IEO_ANG_MD", "1001_IEO_ANG_HI"} <= set(names)
    clips, skipped = CremaD().scan(next(tmp_path.glob("v2-*")))
    assert not skipped and len(clips) == 48


def test_intensity_scales_the_departure_from_neutral_and_syllables_the_length():
    voice = make_voice(0, 0)

    def length(emotion, intensity):  # same seed: only the prosody differs
        return len(synthesize(voice, emotion, np.random.default_rng(0), 16000, intensity=intensity))

    assert length("SAD", 1.2) > 1.15 * length("SAD", 0.5)  # sadder is slower
    assert length("SAD", 0.0) == length("NEU", 1.0)  # no intensity is neutral
    short = synthesize(voice, "NEU", np.random.default_rng(0), 16000, syllables=(3, 3))
    long = synthesize(voice, "NEU", np.random.default_rng(0), 16000, syllables=(12, 12))
    assert len(long) > 3 * len(short)


def _prepare(root):
    Synthetic(num_speakers=3, num_sentences=1, seed=3).prepare(root)


def test_a_daemonic_process_generates_the_same_corpus_serially(tmp_path):
    import multiprocessing

    _prepare(tmp_path / "parallel")
    worker = multiprocessing.get_context("fork").Process(target=_prepare, args=(tmp_path / "daemon",), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert worker.exitcode == 0
    parallel, serial = (sorted((tmp_path / name).rglob("*.wav")) for name in ("parallel", "daemon"))
    assert len(parallel) == 18 and [p.name for p in parallel] == [p.name for p in serial]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(parallel, serial))


def test_speakers_differ_at_least_as_much_as_emotions_do():
    """As in acted corpora: utterance statistics of the log-mel vary more between speakers
    (voice, channel) than between emotions, so a model must learn what carries over."""
    import torch
    import torchaudio.transforms as T

    from ser.data.synthetic import make_sentence

    mel = T.MelSpectrogram(16000, n_fft=1024, hop_length=256, n_mels=40)
    rows, speakers, emotions = [], [], []
    for speaker in range(6):
        voice = make_voice(speaker, 0)
        for e, emotion in enumerate(PROSODY):
            for s in range(2):
                clip = synthesize(voice, emotion, np.random.default_rng([speaker, e, s]), 16000,
                                  sentence=make_sentence(s, (5, 9)))
                logmel = torch.log(mel(torch.from_numpy(clip)) + 1e-6)
                rows.append(torch.cat([logmel.mean(1), logmel.std(1)]).numpy())
                speakers.append(speaker)
                emotions.append(emotion)
    stats = np.stack(rows)
    stats = (stats - stats.mean(0)) / stats.std(0)

    def between(groups):
        means = [stats[[g == key for g in groups]].mean(0) for key in sorted(set(groups))]
        return np.var(np.stack(means), axis=0).mean()

    assert between(speakers) >= between(emotions)


def test_each_speaker_acts_emotions_their_own_way_and_sentences_are_fixed_texts():
    from ser.data.synthetic import make_sentence

    a, b = make_voice(0, 0), make_voice(2, 0)
    assert a.expression["ANG"] != b.expression["ANG"] and a.eq_db != b.eq_db and a.snr_db != b.snr_db
    ratios = []  # anger's pitch against neutral, per speaker
    for speaker in range(4):
        voice = make_voice(speaker, 0)
        sentence = make_sentence(0, (5, 9))
        ratios.append(np.median([pitch(synthesize(voice, "ANG", np.random.default_rng(i), 16000, sentence=sentence))
                                 / pitch(synthesize(voice, "NEU", np.random.default_rng(i), 16000, sentence=sentence))
                                 for i in range(3)]))
    assert max(ratios) - min(ratios) > 0.05
    first, again, other = make_sentence(3, (5, 9)), make_sentence(3, (5, 9)), make_sentence(4, (5, 9))
    assert np.array_equal(first.vowels, again.vowels) and not np.array_equal(first.accents, other.accents)
