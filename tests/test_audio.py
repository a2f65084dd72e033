"""Bad and odd audio never poisons a run: each file is converted, or skipped by name with why."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import soundfile as sf

from ser.data.audio import load_mono, try_load_mono
from ser.data.cache import WaveformCache

from corpora_fixtures import crema_d, speech


def odd_files(audio) -> tuple[dict, dict]:
    """One file of each oddity, in CREMA-D's naming: ({name: kept}, {name: skipped})."""
    clip = speech(0, "anger", 7, 16000)
    kept, skipped = {}, {}

    def put(table, name, samples, rate=16000, **kw):
        sf.write(audio / name, samples, rate, **kw)
        table[name] = samples

    put(skipped, "1001_IOM_ANG_XX.wav", np.where(np.arange(len(clip)) % 97 == 0, np.nan, clip).astype(np.float32), subtype="FLOAT")
    put(skipped, "1001_ITH_ANG_XX.wav", np.where(np.arange(len(clip)) == 5, np.inf, clip).astype(np.float32), subtype="FLOAT")
    put(kept, "1001_ITS_ANG_XX.wav", (3.0 * clip).astype(np.float32), subtype="FLOAT")  # clips far past full scale
    put(kept, "1001_IWL_ANG_XX.wav", np.clip(clip + 0.4, -1, 1), subtype="PCM_16")  # DC offset
    put(kept, "1001_IWW_ANG_XX.wav", clip, subtype="PCM_U8")  # 8-bit
    put(kept, "1001_MTI_ANG_XX.wav", clip, subtype="PCM_24")
    put(kept, "1001_TAI_ANG_XX.wav", clip, subtype="PCM_32")
    put(kept, "1001_TIE_ANG_XX.wav", clip.astype(np.float64), subtype="DOUBLE")
    put(kept, "1001_TSI_ANG_XX.flac", clip, subtype="PCM_16")
    put(kept, "1001_WSI_ANG_XX.ogg", clip, format="OGG", subtype="VORBIS")
    at_44k = speech(0, "anger", 7, 44100)
    put(kept, "1002_IOM_ANG_XX.wav", np.stack([at_44k * g for g in (1, 0.5, 0.2, 0.8, 0.1, 0.3)], axis=1), 44100)  # 6 channels
    return kept, skipped


def test_every_odd_format_is_converted_to_finite_mono_in_range(tmp_path):
    audio = tmp_path / "AudioWAV"
    audio.mkdir()
    kept, skipped = odd_files(audio)
    for name in kept:
        wave = load_mono(audio / name, 16000)
        assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) > 8000, name
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0, name
        assert abs(float(wave.mean())) < 1e-3, name  # no DC offset left
    for name in skipped:
        samples, why = try_load_mono(audio / name, 16000)
        assert samples is None and "non-finite" in why, name


def test_the_waveform_cache_reads_exactly_what_load_mono_decodes_and_halves_16_bit_files(tmp_path):
    root = crema_d(tmp_path / "c", actors=3)  # 16-bit PCM at 16 kHz, as CREMA-D ships
    kept, _ = odd_files(root / "AudioWAV")
    paths = sorted(str(p) for p in root.rglob("*") if p.suffix in (".wav", ".flac", ".ogg") and p.name[:4] != "1001"
                   or p.name in kept)
    cache = WaveformCache.open(paths, 16000, tmp_path / "cache")
    halved = {p for p in paths if sf.info(p).subtype in ("PCM_16", "PCM_U8") and sf.info(p).samplerate == 16000
              and sf.info(p).channels == 1}  # 8-bit samples lie on the 16-bit grid too
    assert "1001_IWL_ANG_XX.wav" in {p.rsplit("/", 1)[-1] for p in halved}  # with a DC offset
    assert set(cache.pcm) == halved and len(halved) < len(paths)
    assert cache.nbytes == sum(cache.length(p) * (2 if p in halved else 4) for p in paths)
    for path in paths:  # 16-bit, 8-bit; resampled, 6 channels, 24/32-bit, float beyond full scale, Vorbis
        samples = cache[path]
        assert samples.dtype == np.float32
        np.testing.assert_array_equal(samples, load_mono(path, 16000))  # bit for bit
        np.testing.assert_array_equal(cache.read(path, 100, 300), samples[100:400])


def test_a_cache_of_an_older_format_is_rebuilt_never_misread(tmp_path, caplog):
    paths = sorted(str(p) for p in crema_d(tmp_path / "c", actors=3).rglob("*.wav"))
    cache = WaveformCache.open(paths, 16000, tmp_path / "cache")
    index = cache.data_file.with_suffix(".json")
    old = json.loads(index.read_text())
    del old["format"], old["dtype"]  # as format 2 wrote it: float32 rows, no type named
    index.write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING):
        again = WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert "format 2 or older" in caplog.text and "rebuilding" in caplog.text
    assert all(np.array_equal(again[p], load_mono(p, 16000)) for p in paths)


def test_a_file_that_disappears_before_decoding_is_skipped_with_its_reason(tmp_path):
    root = crema_d(tmp_path / "c", actors=3)
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    gone = paths[0]
    (root / "AudioWAV" / gone.rsplit("/", 1)[-1]).unlink()  # after the scan, before the cache
    cache = WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert gone not in cache and "cannot decode" in cache.failed[gone]
    assert all(p in cache for p in paths[1:])


def test_one_epoch_on_a_corpus_with_one_file_of_each_oddity_stays_finite(train_cli, tmp_path):
    root = crema_d(tmp_path / "corpus", actors=6)
    kept, skipped = odd_files(root / "AudioWAV")
    proc = train_cli(["data=cremad", f"data.root={root}", "data.num_workers=0", "logger=csv",
                      "trainer.max_epochs=1", "data.batch_size=8"], tmp_path / "run")
    for name in skipped:  # listed by name, with the reason
        assert name in proc.stderr + proc.stdout
    assert "non-finite samples" in proc.stderr + proc.stdout
    with open(tmp_path / "run" / "split.csv", newline="") as handle:
        used = {row["path"].rsplit("/", 1)[-1] for row in csv.DictReader(handle)}
    assert set(kept) <= used and not set(skipped) & used
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert math.isfinite(results["test/loss"])
    with open(tmp_path / "run" / "csv" / "metrics.csv", newline="") as handle:
        losses = [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
    assert losses and all(math.isfinite(x) for x in losses)



def test_a_long_recording_is_cropped_by_default_and_the_log_says_so(tmp_path, caplog, compose_cfg):
    from hydra.utils import instantiate

    root = crema_d(tmp_path / "c", actors=6)
    long = np.tile(speech(0, "anger", 3, 16000), 60)  # one minute in a corpus of 1 s clips
    sf.write(root / "AudioWAV" / "1001_IOM_ANG_XX.wav", long, 16000, subtype="PCM_16")
    cfg = compose_cfg(["model=cnn_gru", "data=cremad", f"data.root={root}", "data.num_workers=0",
                       f"paths.cache_dir={tmp_path / 'cache'}", "features.normalize=utterance"])  # waveforms are read: per-speaker needs cached features
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data, frontend=module.frontend, precompute_features=False)
    with caplog.at_level(logging.INFO):
        dm.prepare_data()
        dm.setup()
    assert cfg.data.max_seconds == 10.0
    assert "1 clips are longer than data.max_seconds=10 s and cropped" in caplog.text
    longest = max(int(dm.datasets[name][i][0].shape[-1]) for name in dm.datasets for i in range(len(dm.datasets[name])))
    assert longest == 10 * 16000
