"""Each parser against tiny corpora in the real layouts, plus the odd cases of real copies."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from ser.data import CremaD, EmoDB, Folder, MissingCorpus, Multi, Ravdess, SERDataModule, Tess
from ser.data.cache import WaveformCache
from ser.data.emotions import EMOTIONS

from corpora_fixtures import LAYOUTS, crema_d, emodb, speech, write


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    return {name: make(base / name) for name, make in LAYOUTS.items()}


def summary(clips):
    return {c.speaker for c in clips}, {c.emotion for c in clips}


def test_crema_d(corpora):
    clips, skipped = CremaD().scan(corpora["cremad"])
    assert len(clips) == 6 * 6 * 2 and not skipped
    speakers, emotions = summary(clips)
    assert speakers == {str(1001 + a) for a in range(6)}
    assert emotions == {"anger", "disgust", "fear", "happiness", "neutral", "sadness"}


def test_ravdess_keeps_audio_only_speech(corpora):
    clips, skipped = Ravdess().scan(corpora["ravdess"])
    assert len(clips) == 4 * 8 * 2 and not skipped  # song and audio-visual files left out quietly
    speakers, emotions = summary(clips)
    assert speakers == {"01", "02", "03", "04"}
    assert emotions == {"neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"}
    assert sf.info(clips[0].path).samplerate == 48000


def test_emodb(corpora):
    clips, _ = EmoDB().scan(corpora["emodb"])
    assert len(clips) == 5 * 7 * 2
    speakers, emotions = summary(clips)
    assert speakers == {"03", "08", "09", "10", "11"}
    assert "boredom" in emotions and len(emotions) == 7


def test_tess_reads_labels_from_file_names_whatever_the_folders(corpora):
    clips, skipped = Tess().scan(corpora["tess"])
    assert len(clips) == 2 * 7 * 4 and not skipped
    speakers, emotions = summary(clips)
    assert speakers == {"OAF", "YAF"}  # "OA_bath_neutral.wav" is OAF's
    assert "surprise" in emotions and len(emotions) == 7
    assert sf.info(clips[0].path).samplerate == 24414


def test_every_label_is_in_the_shared_vocabulary():
    for parser in (CremaD, Ravdess, EmoDB, Tess, Folder):
        assert set(parser.labels.values()) <= set(EMOTIONS)


def test_names_outside_the_scheme_are_listed_not_fatal(tmp_path):
    root = crema_d(tmp_path / "c", actors=1)
    write(root / "AudioWAV" / "1001_DFA_XYZ_XX.wav", speech(0, "anger", 0, 16000), 16000)
    write(root / "AudioWAV" / "notes.wav", speech(0, "anger", 0, 16000), 16000)
    clips, skipped = CremaD().scan(root)
    assert len(clips) == 12
    assert sorted(Path(p).name for p, _ in skipped) == ["1001_DFA_XYZ_XX.wav", "notes.wav"]


@pytest.mark.parametrize("parser", [CremaD(), Ravdess(), EmoDB(), Tess()])
def test_missing_or_empty_root_says_where_to_get_the_corpus(tmp_path, parser):
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(MissingCorpus) as err:
            parser.scan(root)
        assert str(root) in str(err.value) and "http" in str(err.value)


def test_folder_corpus_from_manifest_and_from_emotion_folders(tmp_path):
    for emotion in ("angry", "happy", "neutral"):
        for spk in ("ann", "bob"):
            write(tmp_path / "tree" / emotion / f"{spk}_{emotion}_1.wav", speech(0, "neutral", 0, 16000), 16000)
    clips, _ = Folder().scan(tmp_path / "tree")
    assert summary(clips) == ({"ann", "bob"}, {"anger", "happiness", "neutral"})

    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["path", "emotion", "speaker"])
        for c in clips:
            out.writerow([os.path.relpath(c.path, tmp_path), c.emotion, c.speaker.upper()])
    from_manifest, _ = Folder(manifest=str(manifest)).scan(None)
    assert sorted((c.path, c.emotion) for c in from_manifest) == sorted((c.path, c.emotion) for c in clips)
    assert {c.speaker for c in from_manifest} == {"ANN", "BOB"}


def test_multi_corpus_keeps_speakers_apart(corpora):
    multi = Multi({"cremad": {"corpus": CremaD(), "root": corpora["cremad"]},
                   "emodb": {"corpus": EmoDB(), "root": corpora["emodb"]}})
    clips, _ = multi.scan(None)
    assert len(clips) == 72 + 70
    assert {c.speaker.split("/")[0] for c in clips} == {"cremad", "emodb"}


def datamodule(corpus, root, cache, emotions, **kw):
    """Waveforms as a log-mel model reads them with precompute_features off: 16 kHz, clips of
    at least one STFT window (2048 samples)."""
    from ser.frontends.spectral import FeatureFrontend

    kw = {"frontend": FeatureFrontend(), "precompute_features": False, **kw}
    dm = SERDataModule(corpus, str(root), emotions, num_workers=0, cache_dir=str(cache), **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def test_auto_workers_none_on_cpu_some_per_process_on_a_gpu(monkeypatch):
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    dm = SERDataModule(CremaD(), None, ["anger", "neutral"])
    assert dm.worker_count() == 0  # no trainer yet: CPU
    dm.trainer = SimpleNamespace(accelerator=CPUAccelerator(), world_size=1)
    assert dm.worker_count() == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1)
    assert dm.worker_count() == 4
    dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=8)
    assert dm.worker_count() == 1  # 2 cores per process: one loads while one drives the GPU
    assert SERDataModule(CremaD(), None, ["anger", "neutral"], num_workers=3).loader_args()["num_workers"] == 3
    with pytest.raises(ValueError, match="num_workers"):
        SERDataModule(CremaD(), None, ["anger", "neutral"], num_workers="many")


@pytest.mark.parametrize("name, parser", [("cremad", CremaD()), ("ravdess", Ravdess()),
                                          ("emodb", EmoDB()), ("tess", Tess())])
def test_speaker_independent_splits_on_every_layout(corpora, tmp_path, name, parser):
    emotions = sorted({c.emotion for c in parser.scan(corpora[name])[0]})
    dm = datamodule(parser, corpora[name], tmp_path, emotions)
    rows = list(zip(dm.clips, dm.assignment))
    speakers = {s: {c.speaker for c, x in rows if x == s} for s in ("train", "val", "test")}
    assert not speakers["test"] & (speakers["train"] | speakers["val"])
    if name != "tess":
        assert not speakers["train"] & speakers["val"]
    for split in speakers:
        assert {c.emotion for c, x in rows if x == split} == set(emotions)
    waves, lengths, labels = next(iter(dm.train_dataloader()))
    assert waves.shape[0] == lengths.shape[0] == labels.shape[0]
    assert int(lengths.max()) == waves.shape[1]


def test_bad_files_are_skipped_by_name_and_odd_ones_converted(tmp_path, caplog):
    root = crema_d(tmp_path / "c", actors=3)
    audio = root / "AudioWAV"
    (audio / "1001_ITS_ANG_XX.wav").write_bytes(b"")                              # empty
    (audio / "1001_TSI_ANG_XX.wav").write_bytes(b"RIFF\x00\x00garbage" * 5)        # undecodable
    good = (audio / "1001_DFA_ANG_XX.wav").read_bytes()
    (audio / "1002_ITS_ANG_XX.wav").write_bytes(good[:44])                        # header only
    write(audio / "1002_TSI_ANG_XX.wav", np.zeros(400, np.float32), 16000)        # < one window
    write(audio / "1003_ITS_ANG_XX.wav", np.zeros(16000, np.float32), 16000)      # silent: kept
    stereo = np.stack([speech(2, "anger", 5, 44100)] * 2, axis=1)
    sf.write(audio / "1003_TSI_ANG_XX.wav", stereo, 44100)                        # stereo 44.1 kHz: kept
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*"))
    with caplog.at_level(logging.WARNING):
        dm = datamodule(CremaD(), root, tmp_path / "cache", ["anger", "disgust", "fear", "happiness", "neutral", "sadness"],
                        split="random")
    kept = {Path(c.path).name for c in dm.clips}
    assert {"1003_ITS_ANG_XX.wav", "1003_TSI_ANG_XX.wav"} <= kept
    dropped = {"1001_ITS_ANG_XX.wav", "1001_TSI_ANG_XX.wav", "1002_ITS_ANG_XX.wav", "1002_TSI_ANG_XX.wav"}
    assert not dropped & kept
    log = caplog.text
    assert all(name in log for name in dropped) and "Skipped 3 file(s), unreadable audio" in log
    assert "Skipped 1 file(s), clips too short" in log
    assert sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*")) == before  # corpus untouched

    import torch

    from ser.frontends.spectral import FeatureFrontend

    cache = dm.datasets["train"].cache
    silent = torch.from_numpy(np.array(cache[str(audio / "1003_ITS_ANG_XX.wav")]))[None]
    feats, _ = FeatureFrontend()(silent, torch.tensor([silent.shape[1]]))
    assert torch.isfinite(feats).all()
    assert len(cache[str(audio / "1003_TSI_ANG_XX.wav")]) == pytest.approx(16000, abs=2)  # 44.1 k -> 16 k mono


def test_cache_is_rebuilt_when_a_file_changes(tmp_path):
    root = emodb(tmp_path / "e", speakers=("03",))
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    first = WaveformCache.open(paths, 16000, tmp_path / "cache")
    again = WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "waveforms").glob("*.json"))) == 1
    np.testing.assert_array_equal(first[paths[0]], again[paths[0]])
    write(Path(paths[0]), 0.5 * speech(5, "anger", 3, 16000)[:8000], 16000)
    changed = WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "waveforms").glob("*.json"))) == 2
    assert changed.length(paths[0]) == 8000 != first.length(paths[0])
    np.testing.assert_array_equal(changed[paths[1]], first[paths[1]])


def test_cache_reads_ranges_in_any_process_and_keeps_clips_out_of_resident_memory(tmp_path):
    import pickle

    from torch.utils.data import DataLoader

    root = emodb(tmp_path / "e", speakers=("03",))
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    cache = WaveformCache.open(paths, 16000, tmp_path / "cache")
    whole = cache[paths[0]]
    assert whole.flags.writeable and whole.dtype == np.float32
    np.testing.assert_array_equal(cache.read(paths[0], 100, 50), whole[100:150])
    np.testing.assert_array_equal(cache.read(paths[0], len(whole) - 10, 50), whole[-10:])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cache))[paths[1]], cache[paths[1]])
    in_workers = list(DataLoader(paths, batch_size=None, num_workers=2, collate_fn=cache.read))
    for path, samples in zip(paths, in_workers):
        np.testing.assert_array_equal(samples, cache[path])
    if Path("/proc/self/maps").exists():  # Linux: read through the page cache, never mapped in
        assert str(cache.data_file) not in Path("/proc/self/maps").read_text()
    os.truncate(cache.data_file, 4 * 100)
    with pytest.raises(OSError, match="truncated"):
        cache[paths[-1]]


def test_max_seconds_crops_randomly_in_training_and_centrally_at_evaluation(corpora, tmp_path):
    emotions = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    dm = datamodule(CremaD(), corpora["cremad"], tmp_path, emotions, max_seconds=0.5)
    train, test = dm.datasets["train"], dm.datasets["test"]
    assert all(len(train[i][0]) == 8000 for i in range(5))
    full = train.cache[train.paths[0]]
    starts = {int(np.flatnonzero(np.isclose(full, train[0][0][0].item()))[0]) for _ in range(8)}
    assert len(starts) > 1  # random crops
    crop = test[0][0].numpy()
    whole = test.cache[test.paths[0]]
    start = (len(whole) - 8000) // 2
    np.testing.assert_array_equal(crop, whole[start : start + 8000])


def test_kfold_multirun_and_aggregate(train_cli, tmp_path, corpora):
    import subprocess
    import sys

    from conftest import REPO

    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "data=emodb", f"data.root={corpora['emodb']}", "data.split=kfold",
         "data.num_folds=5", "data.fold=0,1", "debug=limit", "logger=csv", f"hydra.sweep.dir={sweep}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tests = [{r["speaker"] for r in csv.DictReader(open(f)) if r["split"] == "test"}
             for f in sorted(sweep.glob("*/split.csv"))]
    assert len(tests) == 2 and not tests[0] & tests[1]
    out = subprocess.run([sys.executable, "-m", "ser.evidence.aggregate", str(sweep)], capture_output=True, text=True)
    assert out.returncode == 0 and "test/uar" in out.stdout
    summary = json.loads((sweep / "aggregate.json").read_text())
    assert summary["runs"] == 2 and len(summary["test/uar"]["values"]) == 2


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_short_training_run_on_every_layout(train_cli, tmp_path, corpora, name):
    train_cli([f"data={name}", f"data.root={corpora[name]}", "debug=limit", "logger=csv", "data.num_workers=0"],
              tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["n_test"] > 0 and results["protocol"] == "speaker-independent"


@pytest.fixture
def built_model(compose_cfg):
    """A freshly built model (the CNN-GRU on log-mel unless the overrides choose another), whose
    front end a DataModule is handed as train.py hands it."""
    from hydra.utils import instantiate

    def make(*overrides):
        return instantiate(compose_cfg(["model=cnn_gru", *overrides]).model)
    return make


@pytest.mark.parametrize("features", ["logmel", "mfcc"])
def test_log_mel_computed_once_trains_and_scores_as_the_waveforms_do(corpora, tmp_path, built_model, features):
    import torch

    # Per-utterance: the waveform path has no per-speaker normalisation to compare with.
    module = built_model("data.emotions=[anger,disgust,fear,happiness,neutral,sadness]", f"features={features}",
                         "features.normalize=utterance")
    batches = {}
    for precompute in (True, False):
        dm = SERDataModule(CremaD(), str(corpora["cremad"]), module.classes, frontend=module.frontend,
                           num_workers=0, cache_dir=str(tmp_path / "cache"), precompute_features=precompute)
        dm.prepare_data()
        dm.setup()
        batches[precompute] = next(iter(dm.test_dataloader()))
    cached, waves = batches[True], batches[False]
    assert cached[0].shape[1] == 128 and waves[0].dim() == 2  # log-mel frames / samples
    assert torch.equal(cached[2], waves[2])
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(*cached[:2]), module(*waves[:2]), atol=1e-4, rtol=1e-4)
        logits = []
        for inputs, lengths, _ in (cached, waves):  # training: same gain and SpecAugment draws
            torch.manual_seed(0)
            logits.append(module.train()._train_logits(inputs, lengths))
        torch.testing.assert_close(*logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("precompute", [True, False], ids=["log-mel", "waveforms"])
def test_cache_held_on_the_device_gathers_the_batches_the_loaders_build(tmp_path, built_model, precompute):
    """cache_on_device=true (here on the CPU; on a GPU the same code runs there): the loaders
    yield row spans, no workers, and the gathered batches equal the loaders' own, random and
    centre crops included."""
    import torch

    from ser.data import Synthetic
    from ser.data.loading import Spans

    emotions = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    normalize = "speaker" if precompute else "utterance"  # per speaker: cached features only
    module = built_model(f"data.emotions=[{','.join(emotions)}]", f"features.normalize={normalize}")
    batches = {}
    for resident in (False, True):  # clips of 1-2 s: some cropped (at random in training), some padded
        dm = SERDataModule(Synthetic(num_speakers=4, num_sentences=2), str(tmp_path / "corpus"), emotions,
                           frontend=module.frontend, num_workers=0, batch_size=5, cache_dir=str(tmp_path / "cache"),
                           precompute_features=precompute, max_seconds=1.5, cache_on_device=resident)
        dm.prepare_data()
        dm.setup()
        torch.manual_seed(0)  # the random crops
        loaders = dm.train_dataloader(), dm.test_dataloader()
        batches[resident] = [dm.on_after_batch_transfer(batch, 0) for loader in loaders for batch in loader]
        if resident:
            assert isinstance(next(iter(loaders[0])), Spans) and loaders[0].num_workers == 0
    assert len(batches[True]) == len(batches[False]) > 2
    for gathered, built in zip(batches[True], batches[False]):
        for a, b in zip(gathered, built):
            assert torch.equal(a, b)
    lengths = [batch[1] for batch in batches[True]]
    assert any(int(n.min()) < int(n.max()) for n in lengths)  # padding was exercised
    longest = dm.datasets["train"].max_len
    assert any(int(n.max()) == longest for n in lengths)  # and crops


def test_a_cache_too_large_for_the_device_is_a_clear_error(tmp_path, monkeypatch):
    import torch

    from ser.data.cache import ResidentRows, WaveformCache
    from ser.errors import UserError

    path = write(tmp_path / "a.wav", speech(0, "anger", 0, 16000), 16000)
    cache = WaveformCache.open([str(path)], 16000, tmp_path / "cache")

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(torch, "empty", out_of_memory)
    with pytest.raises(UserError, match="does not fit.*cache_on_device=auto"):
        ResidentRows.load(cache, "cpu")


def test_cache_on_device_auto_takes_a_cuda_gpu_with_room_to_spare(monkeypatch, tmp_path):
    import torch
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    cache = SimpleNamespace(nbytes=300 * 2**20)
    dm = SERDataModule(CremaD(), None, ["anger", "neutral"])
    assert not dm._holds_cache_on_device(cache)  # no trainer
    dm.trainer = SimpleNamespace(accelerator=CPUAccelerator(), world_size=1)
    assert not dm._holds_cache_on_device(cache)
    dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (80 * 2**30, 80 * 2**30))
    assert dm._holds_cache_on_device(cache)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (1 * 2**30, 80 * 2**30))  # a crowded GPU
    assert not dm._holds_cache_on_device(cache)
    assert SERDataModule(CremaD(), None, ["anger", "neutral"], cache_on_device=True)._holds_cache_on_device(cache)
    with pytest.raises(ValueError, match="cache_on_device"):
        SERDataModule(CremaD(), None, ["anger", "neutral"], cache_on_device="gpu")


def test_feature_cache_is_built_once_per_front_end_and_crops_in_frames(corpora, tmp_path, built_model,
                                                                       tiny_encoders):
    emotions = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    features = tmp_path / "cache" / "features"

    def setup(*overrides, **kw):
        module = built_model(f"data.emotions=[{','.join(emotions)}]", *overrides)
        dm = SERDataModule(CremaD(), str(corpora["cremad"]), emotions, frontend=module.frontend,
                           num_workers=0, cache_dir=str(tmp_path / "cache"), **kw)
        dm.prepare_data()
        dm.setup()
        return dm

    dm = setup(max_seconds=0.5)
    setup()  # the same front end: the same cache (and the same one normalised per speaker)
    assert len(list(features.glob("*.json"))) == 1
    assert len(list((tmp_path / "cache" / "by_speaker").glob("*.json"))) == 1
    train, test = dm.datasets["train"], dm.datasets["test"]
    frames = 1 + (8000 - 2048) // 512  # 0.5 s at 16 kHz, n_fft 2048, hop 512
    assert all(train[i][0].shape == (128, frames) for i in range(5))
    whole = test.cache[test.paths[0]]
    start = (len(whole) - frames) // 2
    np.testing.assert_array_equal(test[0][0].numpy(), whole[start : start + frames].T)
    assert setup("features.n_mels=64").datasets["train"][0][0].shape[0] == 64
    assert len(list(features.glob("*.json"))) == 2
    # An encoder being fine-tuned changes as it trains: nothing to precompute, raw samples.
    tuned = setup("model=hf", f"features.name={tiny_encoders['wav2vec2']}", "features.freeze=conv")
    assert tuned.datasets["train"][0][0].dim() == 1 and len(list(features.glob("*.json"))) == 2


def test_a_float16_feature_cache_holds_the_stage_output_rounded_to_float16(corpora, tmp_path, built_model):
    from ser.data.cache import FeatureCache

    stage = built_model("data.emotions=[anger,neutral]").frontend.frozen_stage()
    paths = sorted(str(p) for p in corpora["cremad"].rglob("*.wav"))[:12]
    waveforms = WaveformCache.open(paths, 16000, tmp_path / "cache")
    full = FeatureCache.open(waveforms, stage, tmp_path / "cache")
    half = FeatureCache.open(waveforms, stage, tmp_path / "cache", dtype="float16")
    assert (full.dtype, half.dtype) == (np.float32, np.float16) and half.nbytes == full.nbytes // 2
    for path in paths:
        assert half[path].dtype == np.float32
        np.testing.assert_array_equal(half[path], full[path].astype(np.float16).astype(np.float32))


def test_a_feature_cache_built_in_shares_is_the_file_one_process_writes(corpora, tmp_path, built_model):
    """Each process of a job computes its share; the first assembles them (here two threads
    stand in for the two processes of trainer=ddp_sim, which tests/test_scale.py runs)."""
    import threading

    from ser.data.cache import FeatureCache, Shares

    stage = built_model("data.emotions=[anger,neutral]").frontend.frozen_stage()
    paths = sorted(str(p) for p in corpora["cremad"].rglob("*.wav"))[:15]
    one = FeatureCache.open(WaveformCache.open(paths, 16000, tmp_path / "one"), stage, tmp_path / "one")
    waveforms = WaveformCache.open(paths, 16000, tmp_path / "two")
    barrier, opened = threading.Barrier(2), {}

    def process(rank):
        opened[rank] = FeatureCache.open(waveforms, stage, tmp_path / "two", shares=Shares(rank, 2, barrier.wait))
    threads = [threading.Thread(target=process, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    two = opened[1]
    assert two.data_file.read_bytes() == one.data_file.read_bytes()
    assert two.data_file.with_suffix(".json").read_text() == one.data_file.with_suffix(".json").read_text()
    assert sorted(p.name for p in two.data_file.parent.iterdir()) == sorted(p.name for p in one.data_file.parent.iterdir())
    assert FeatureCache.open(waveforms, stage, tmp_path / "two", shares=Shares(0, 2, None)).offsets == one.offsets  # built


def test_a_cache_build_keeps_a_bounded_number_of_clips_in_flight_and_shows_clips_per_second():
    from concurrent.futures import ThreadPoolExecutor

    from ser.data.cache import ClipsPerSecond, ordered_map

    taken = []

    def paths():  # a corpus of any size: Executor.map would take every path before the first result
        for i in range(10_000):
            taken.append(i)
            yield i
    with ThreadPoolExecutor(2) as pool:
        results = ordered_map(pool, lambda i: i * i, paths(), ahead=8)
        assert [next(results) for _ in range(3)] == [0, 1, 4] and len(taken) <= 8 + 3
        assert sum(results) == sum(i * i for i in range(3, 10_000))
    assert str(ClipsPerSecond().render(SimpleNamespace(speed=212.37))) == "212.4 clips/s"
    assert str(ClipsPerSecond().render(SimpleNamespace(speed=None))) == ""  # before the first clip


def test_a_damaged_cache_is_rebuilt_with_a_warning_when_opened(tmp_path, caplog):
    root = crema_d(tmp_path / "c", actors=3)
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    cache = WaveformCache.open(paths, 16000, tmp_path / "cache")
    whole = {p: cache[p] for p in paths}
    with open(cache.data_file, "r+b") as handle:  # a copy cut short, a full disk
        handle.truncate(cache.nbytes // 2)
    with caplog.at_level(logging.WARNING):
        again = WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert "cannot be read" in caplog.text and str(cache.data_file) in caplog.text
    assert all(np.array_equal(again[p], whole[p]) for p in paths)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        WaveformCache.open(paths, 16000, tmp_path / "cache")
    assert "cannot be read" not in caplog.text  # intact now: opened as it is


def test_two_processes_opening_one_cold_cache_build_it_once(tmp_path):
    import subprocess
    import sys

    root = crema_d(tmp_path / "c", actors=3)
    script = ("import logging, sys; from pathlib import Path; logging.basicConfig(level=logging.INFO);"
              "from ser.data.cache import WaveformCache;"
              "paths = sorted(str(p) for p in Path(sys.argv[1]).rglob('*.wav'));"
              "cache = WaveformCache.open(paths, 16000, sys.argv[2]);"
              "print(sum(cache.length(p) for p in paths), len(paths))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(root), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    counts = [out.split() for out, _ in outputs]
    assert counts[0] == counts[1] and int(counts[0][1]) == len(list(root.rglob("*.wav")))
    assert sum(err.count("Cached ") for _, err in outputs) == 1  # one process built, the other read it


def test_speaker_normalisation_gives_each_speaker_zero_mean_unit_variance(corpora, tmp_path, built_model):
    import numpy as np
    import torch

    from ser.data.cache import FeatureCache, WaveformCache

    module = built_model("data.emotions=[anger,disgust,fear,happiness,neutral,sadness]", "features.normalize=speaker")
    dm = SERDataModule(CremaD(), str(corpora["cremad"]), module.classes, frontend=module.frontend,
                       num_workers=0, cache_dir=str(tmp_path / "cache"), max_seconds=None)
    dm.prepare_data()
    dm.setup()
    cache = dm.datasets["train"].cache
    for speaker in {c.speaker for c in dm.clips}:  # test speakers too: their unlabelled audio
        rows = np.concatenate([cache[c.path] for c in dm.clips if c.speaker == speaker])
        assert np.abs(rows.mean(0)).max() < 1e-3 and np.abs(rows.std(0) - 1).max() < 1e-2
    # Each clip keeps its own log-mel, shifted and scaled per bin by its speaker's moments.
    raw = FeatureCache.open(WaveformCache.open([c.path for c in dm.clips], dm.sample_rate, dm.cache_dir),
                            dm.frozen_stage, dm.cache_dir)
    path = dm.clips[0].path
    assert np.corrcoef(raw[path][:, 10], cache[path][:, 10])[0, 1] > 0.999
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():  # the model takes them as they come: no second normalisation
        feats, frames = module.frontend(*batch[:2])
    n = int(frames[0])
    torch.testing.assert_close(feats[0, :, :n], batch[0][0, :, :n])


def test_speaker_normalisation_needs_cached_spectral_features(corpora, tmp_path, built_model):
    from ser.errors import ConfigError

    module = built_model("data.emotions=[anger,disgust,fear,happiness,neutral,sadness]", "features.normalize=speaker")
    with pytest.raises(ConfigError, match="precompute_features"):
        SERDataModule(CremaD(), str(corpora["cremad"]), module.classes, frontend=module.frontend,
                      cache_dir=str(tmp_path), precompute_features=False)


def test_the_espeak_evaluation_corpus_is_in_ravdess_real_layout(tmp_path):
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import espeak_corpus

    count = espeak_corpus.write(tmp_path, count=2)
    assert count == 2 * (7 * 2 * 2 * 2 + 2 * 2)  # neutral only at normal intensity
    clips, skipped = Ravdess().scan(tmp_path)
    assert not skipped and len(clips) == count
    assert {c.speaker for c in clips} == {"01", "02"}
    assert {c.emotion for c in clips} == set(Ravdess.labels.values())
    assert sf.info(clips[0].path).samplerate == 48000
    first = sorted(tmp_path.rglob("03-01-05-02-01-01-01.wav"))
    assert first and first[0].parent.name == "Actor_01"
    angry, sad = (sf.read(next(tmp_path.rglob(f"03-01-{code}-02-01-01-01.wav")))[0] for code in ("05", "04"))
    assert len(angry) < len(sad)  # acted: anger faster than sadness
