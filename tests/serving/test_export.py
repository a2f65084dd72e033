"""ser-export and the exported model: onnxruntime answers as the checkpoint does (front end inside,
speaker statistics as the model was trained), ser-predict --model prints what --ckpt prints, from an
install without torch, and --stream scores a pipe window by window."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser.serving.predict import pad as pad_batch

from conftest import REPO, SMALL, predict_cli
from corpora_fixtures import assert_answered_and_skipped, damaged_folder
from test_lora import randomise_adapters
from test_normalization import read_test_split

# The model of the end-to-end test: the CNN on log-mel normalised per speaker (its default), so the
# export has both graphs (model.onnx and features.onnx) and the statistics inputs.
TRAIN = [*SMALL, "logger=csv", "model=cnn", "trainer.max_epochs=1", "trainer.limit_val_batches=1",
         "callbacks.early_stopping=null"]
# Built in-process (weights at random; pooled statistics handed over as training would).
IN_PROCESS = {
    "mfcc-lstm-utterance": ["model=lstm", "features=mfcc", "features.normalize=utterance"],
    "mfcc-lstm-speaker": ["model=lstm", "features=mfcc"],  # its default: the LSTM reads features.onnx's log-mel
    # The flagship: log-mel per speaker (model.onnx reads features.onnx's log-mel), a bidirectional GRU.
    "logmel-cnn_gru-speaker": ["model=cnn_gru", "features.normalize=speaker"],
    # ResNet-18's padding masks are laid by forward hooks on torchvision's blocks (ser.ops.frame_mask).
    "logmel-resnet18-utterance": ["model=resnet18", "features.normalize=utterance"],
    "encoder": ["model=hf"],  # features.name: a tiny random wav2vec 2.0 (GroupNorm over real frames)
    "encoder-emotion2vec": ["model=hf"],  # FunASR's tiny emotion2vec on ser's own implementation
    # A tiny random Whisper: its log-mel in the graph (WhisperLogMel), every state of every frame.
    "encoder-whisper": ["model=hf", "features.states=frames"],
    # LoRA adapters (trained: B not zero, feed-forward too) merged into the encoder for the graph,
    # compared with the unmerged checkpoint: WavLM, whose attention ser runs through its projections
    # (every family's merge is checked in torch by tests/test_lora.py).
    "encoder-wavlm-lora": ["model=hf", "features.adapter=lora", "features.lora.feed_forward=true"],
    # The head beside openSMILE, with both tasks' outputs: class probabilities and attribute values.
    "egemaps-speaker-both": ["model=egemaps_mlp", "features.normalize=speaker", "task=both"],
}


def rows(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def assert_same_predictions(exported: list[dict], checkpoint: list[dict]) -> None:
    """Same files, windows and classes; probabilities within 1e-4 (and the 6-digit rounding)."""
    assert len(exported) == len(checkpoint)
    for a, b in zip(exported, checkpoint):
        assert [(w["start"], w["end"]) for w in a["windows"]] == [(w["start"], w["end"]) for w in b["windows"]]
        for x, y in [(a, b), *zip(a["windows"], b["windows"])]:
            assert x["emotion"] == y["emotion"]
            assert max(abs(x["probs"][c] - y["probs"][c]) for c in x["probs"]) <= 1e-4 + 1e-6


def test_recurrent_final_states_are_the_packed_ones_when_exporting():
    from ser.models.blocks import _final_states_unpacked, final_states

    torch.manual_seed(0)
    lengths = torch.tensor([30, 7, 1, 19])
    seq = torch.randn(4, 30, 8) * (torch.arange(30)[None, :] < lengths[:, None])[..., None]
    for rnn in (torch.nn.GRU(8, 16, batch_first=True, bidirectional=True),
                torch.nn.LSTM(8, 16, batch_first=True, bidirectional=True),
                torch.nn.GRU(8, 16, batch_first=True, bidirectional=True, bias=False),
                torch.nn.LSTM(8, 16, num_layers=2, batch_first=True)):
        assert torch.allclose(final_states(rnn, seq, lengths), _final_states_unpacked(rnn, seq, lengths), atol=1e-6)
    with pytest.raises(NotImplementedError, match="bidirectional"):
        _final_states_unpacked(torch.nn.GRU(8, 16, 2, batch_first=True, bidirectional=True), seq, lengths)


@pytest.mark.slow
@pytest.mark.parametrize("case", IN_PROCESS)
def test_onnxruntime_answers_as_the_checkpoint_alone_and_in_padded_batches(case, build, tiny_encoders, tmp_path):
    from ser.frontends.normalize import SpeakerStatistics
    from ser.serving.export import export_module, parity
    from ser.serving.runtime import CheckpointModel, ExportedModel

    family = {"encoder": "wav2vec2", "encoder-emotion2vec": "emotion2vec", "encoder-whisper": "whisper",
              "encoder-wavlm-lora": "wavlm"}.get(case)
    extra = [f"features.name={tiny_encoders[family]}"] if family else []
    module, _ = build(IN_PROCESS[case][0].split("=")[1], [*IN_PROCESS[case][1:], *extra])
    frontend = module.frontend
    if case.endswith("lora"):
        randomise_adapters(module)
    if frontend.speaker_normalizer() is not None:  # as training hands them over: not the identity
        width = frontend.pooled.mean.numel()
        rng = np.random.default_rng(0)
        frontend.pooled.remember(SpeakerStatistics(rng.normal(0, 3, width), rng.uniform(0.5, 4, width)), 1e4)
    out = export_module(module, tmp_path / "exported")
    manifest = json.loads((out / "ser.json").read_text())
    assert manifest["parity"]["max_abs_difference"] <= 1e-4
    assert manifest["inputs"] == ("stage" if "speaker" in case else "audio")
    assert (out / "features.onnx").exists() == (case.startswith(("logmel", "mfcc")) and "speaker" in case)
    # No graph is narrowed to the exporter's 3 s example (a batch of short clips is not padded to
    # it): what is left is the network's own need (a CNN's pooling: 32 frames, 1.1 s).
    second = {"audio": 16000, "stage": 16000 if case.startswith("egemaps") else int(frontend.frame_lengths(torch.tensor(16000)))}
    widths = {"model": second[manifest["inputs"]], "features": second["audio"]}
    assert all(n is None or n <= 1.2 * widths[graph] for graph, n in manifest["narrowest"].items())
    reading = manifest["reading"]
    assert len(reading["classes"]) == 6 and reading["attributes"] == (
        ["arousal", "valence", "dominance"] if case.endswith("both") else [])
    # Other clips than the exporter's probes: noise of several lengths, the shortest one window.
    rng = np.random.default_rng(1)
    clips = [rng.normal(0, 0.1, n).astype(np.float32) for n in (frontend.min_samples, 5000, 23000, 61000)]
    assert parity(ExportedModel(out), CheckpointModel(module), clips) <= 1e-4


def test_an_export_that_is_not_faithful_is_refused_and_nothing_is_written(build, tmp_path):
    from ser.serving.export import ExportRefused, export_module

    module, _ = build("egemaps_mlp", ["features.normalize=none"])
    with pytest.raises(ExportRefused, match="not faithful.*Nothing was written"):
        export_module(module, tmp_path / "exported", tolerance=0.0)  # no float graph is bit-exact here
    assert not (tmp_path / "exported").exists() and not list(tmp_path.glob(".ser-export-*"))


def test_whisper_log_mel_in_the_graph_is_transformers_extractor(tiny_encoders):
    """WhisperLogMel (what an exported Whisper computes) against the feature extractor the model was
    trained with, on speech-like clips from one hop to the whole 30 s window, alone and in a batch."""
    from transformers import WhisperFeatureExtractor

    from ser.frontends.encoders import WhisperLogMel
    from ser.serving.export import _probe

    extractor = WhisperFeatureExtractor.from_pretrained(tiny_encoders["whisper"])
    graph = WhisperLogMel(extractor)
    clips = [_probe(16000, n, seed) for seed, n in enumerate((160, 7000, 41000, 16000 * 30))]
    expected = extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    waves, _ = pad_batch(clips)
    assert float((graph(torch.from_numpy(waves)) - expected).abs().max()) <= 1e-4
    for clip, row in zip(clips, expected):
        assert float((graph(torch.from_numpy(clip)[None])[0] - row).abs().max()) <= 1e-4


def test_a_whisper_export_keeps_ser_predicts_windows_within_its_30_seconds(build, tiny_encoders, tmp_path):
    from ser.serving.export import export_module

    module, _ = build("hf", [f"features.name={tiny_encoders['whisper']}"])
    exported = export_module(module, tmp_path / "exported")
    assert json.loads((exported / "ser.json").read_text())["max_window_seconds"] == 30
    sf.write(tmp_path / "clip.wav", np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
    proc = predict_cli("--model", exported, tmp_path / "clip.wav", "--window", "40")
    assert proc.returncode == 2 and "scores windows of at most 30 s" in proc.stderr
    assert len(rows(predict_cli("--model", exported, tmp_path / "clip.wav", "--window", "30"))) == 1


def light_env(path: Path, cards: list[Path]) -> Path:
    """A new virtual environment holding what the model ``cards`` say to install (their install
    lines, ser's source being a copy of this checkout: building a wheel writes build/ into the
    tree it builds): the prediction install, and openSMILE for an eGeMAPS model."""
    source = path / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "ser", "hydra_plugins"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / name).is_dir() else {}))
    venv.create(path / "env", with_pip=True)
    python = path / "env" / "bin" / "python"
    for card in cards:
        line = next(line for line in card.read_text().splitlines() if line.startswith("pip install "))
        arguments = shlex.split(line.replace("PATH_TO_SER", str(source)))[2:]
        subprocess.run([python, "-m", "pip", "install", "-q", *arguments], check=True, capture_output=True, timeout=900)
    return python


def card_lines_answer(python: Path, exported: Path, clip: Path, cwd: Path) -> dict:
    """What the card's lines without ser print for ``clip``, run exactly as the card shows them."""
    card = (exported / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    code = code.replace('"THIS_FOLDER"', repr(str(exported))).replace('"clip.wav"', repr(str(clip)))
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def assert_card_answers_as_ser_predict(python: Path, exported: Path, clip: Path, cwd: Path) -> None:
    answer = card_lines_answer(python, exported, clip, cwd)
    row = rows(predict_cli("--model", exported, clip))[0]
    said = {**row.get("probs", {}), **row.get("attributes", {})}
    assert answer.keys() == said.keys()
    assert max(abs(answer[k] - said[k]) for k in said) <= 1e-5


@pytest.mark.slow
def test_an_exported_run_predicts_as_its_checkpoint_from_an_install_without_torch(train_cli, build, tmp_path):
    train_cli(TRAIN, tmp_path / "run")
    results, by_speaker = read_test_split(tmp_path / "run")
    exported = tmp_path / "exported"
    proc = subprocess.run([sys.executable, "-m", "ser.serving.export", tmp_path / "run", exported, "--quantize", "int8"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in exported.iterdir()) == ["README.md", "features.onnx", "model.int8.onnx", "model.onnx",
                                                         "ser.json"]
    manifest = json.loads((exported / "ser.json").read_text())
    assert manifest["reading"]["classes"] == results["classes"]
    # Shipped elsewhere: the run by name, paths relative to it, none of this machine's.
    assert manifest["source"] == {"run": "run", "checkpoint": "checkpoints/last.ckpt", "results": "results.json"}
    assert str(tmp_path) not in (exported / "ser.json").read_text() + (exported / "README.md").read_text()
    assert manifest["per_speaker"]["pooled"]["frames"] > 0 and manifest["frontend"]["normalize"] == "speaker"
    card = (exported / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: ser\n") and "\n---\n" in card
    # int8, measured on the run's own test split: the float graph scores it as the test step did.
    int8 = manifest["int8"]
    assert int8["measured_on"] == "the run's test split" and int8["clips"] == results["n_test"]
    assert abs(int8["test_uar"]["float"] - results["test/uar"]) < 1e-6  # (results.json: torchmetrics' float32)
    assert int8["test_uar"]["change"] == int8["test_uar"]["int8"] - int8["test_uar"]["float"]
    assert 0 < int8["max_probability_change"] < 0.05 and int8["speedup"] > 0
    assert f"{int8['test_uar']['int8']:.3f} with int8" in card
    assert f"| test/uar | {results['test/uar']:.3f}" in card and results["corpus"] in card

    speaker, clips = next(iter(by_speaker.items()))
    files = [c["path"] for c in clips]
    ckpt = results["tested_ckpt"]
    # The light install, as the cards say: no torch, no Lightning, no Hydra; the same answers, the
    # same speaker handling.
    from ser.serving.export import export_module

    egemaps_module, _ = build("egemaps_mlp")  # per speaker, its default; weights at random
    egemaps = export_module(egemaps_module, tmp_path / "egemaps")
    python = light_env(tmp_path / "light", [exported / "README.md", egemaps / "README.md"])
    assert subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    light = subprocess.run([python, "-m", "ser.serving.predict", "--model", exported, *files], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
    assert "taken as one speaker's clips" in light.stderr
    assert_same_predictions(rows(light), rows(predict_cli("--ckpt", ckpt, *files)))
    # The int8 graph on request, within the change ser-export measured on these very clips.
    quantized = subprocess.run([python, "-m", "ser.serving.predict", "--model", exported, "--int8", *files],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    moved = max(abs(a["probs"][c] - b["probs"][c]) for a, b in zip(rows(quantized), rows(light)) for c in a["probs"])
    assert 0 < moved <= int8["max_probability_change"] + 2e-6
    # The test step's own answers for this speaker, from the export.
    counts = [[0] * len(results["classes"]) for _ in results["classes"]]
    for clip, row in zip(clips, rows(light)):
        counts[results["classes"].index(clip["emotion"])][results["classes"].index(row["emotion"])] += 1
    assert counts == results["per_speaker_confusion"][speaker]
    # A lone file: the pooled statistics, with the warning, on both.
    lone_exported = predict_cli("--model", exported, files[0])
    assert "pooled statistics" in lone_exported.stderr
    assert_same_predictions(rows(lone_exported), rows(predict_cli("--ckpt", ckpt, files[0])))
    # The card's lines without ser answer for a lone file as ser-predict --model does (the pooled
    # statistics), and those of a model reading audio (normalised per utterance) too.
    assert_card_answers_as_ser_predict(python, exported, Path(files[0]), tmp_path)
    utterance_module, _ = build("cnn", ["features.normalize=utterance", "model.net.channels=[8,16]"])
    utterance = export_module(utterance_module, tmp_path / "utterance")
    assert_card_answers_as_ser_predict(python, utterance, Path(files[0]), tmp_path)
    # The default recipe's kind (openSMILE beside the exported head), in the same install.
    light = subprocess.run([python, "-m", "ser.serving.predict", "--model", egemaps, *files], capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
    from ser.serving.predict import predict
    from ser.serving.runtime import CheckpointModel

    in_torch = list(predict(CheckpointModel(egemaps_module), [Path(f) for f in files]))
    assert_same_predictions(rows(light), in_torch)
    assert "torch" not in subprocess.run([python, "-c", "import sys, ser.serving.predict, ser.serving.runtime; "
                                          f"ser.serving.runtime.ExportedModel({str(egemaps)!r}); print(*sys.modules)"],
                                         capture_output=True, text=True).stdout.split()


def stream_cli(model: Path, data: bytes, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser.serving.predict", "--model", str(model), "--stream", "-", *args],
                          input=data, capture_output=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def utterance_export(tmp_path_factory):
    """An exported CNN normalising per utterance, at random weights (module-wide: export is slow)."""
    from hydra.utils import instantiate

    from ser.serving.export import export_module

    from conftest import compose_train

    torch.manual_seed(0)
    module = instantiate(compose_train(["model=cnn", "features.normalize=utterance",
                                        "model.net.channels=[8,16]"]).model)
    return export_module(module, tmp_path_factory.mktemp("stream") / "exported")


class Counted:
    """An onnxruntime session that counts the clips each input name was given."""

    def __init__(self, session):
        self.session, self.clips = session, {}

    def run(self, outputs, feed):
        for name, value in feed.items():
            self.clips[name] = self.clips.get(name, 0) + len(value)
        return self.session.run(outputs, feed)


def test_a_per_speaker_export_computes_each_clips_log_mel_once(tmp_path):
    """features.onnx computes a window's log-mel; model.onnx reads it (it has no audio input), for
    the speaker's statistics and the score alike, in predict() and in a stream."""
    from hydra.utils import instantiate

    from ser.serving.export import export_module
    from ser.serving.predict import predict, stream
    from ser.serving.runtime import ExportedModel

    from conftest import compose_train

    torch.manual_seed(0)
    module = instantiate(compose_train(["model=cnn", "features.normalize=speaker", "model.net.channels=[8,16]"]).model)
    module.frontend.pooled.remember(module.frontend.pooled.statistics(), 1.0)
    model = ExportedModel(export_module(module, tmp_path / "exported"))
    assert [i.name for i in model.session.get_inputs()][0] == "features"
    model.session, model.stage_session = Counted(model.session), Counted(model.stage_session)
    rng = np.random.default_rng(0)
    for k, seconds in enumerate((0.5, 1.3, 2.2, 3.1, 14.0)):  # the last: two windows of 10 s
        sf.write(tmp_path / f"{k}.wav", rng.normal(0, 0.1, int(seconds * 16000)), 16000)
    answered = list(predict(model, sorted(tmp_path.glob("*.wav")), batch_size=2))
    windows = sum(len(row["windows"]) for row in answered)
    assert windows == 6 and model.stage_session.clips["audio"] == 6 and model.session.clips["features"] == 6
    model.session.clips, model.stage_session.clips = {}, {}
    pcm = (rng.normal(0, 0.1, 16000 * 25) * 32767).astype("<i2").tobytes()
    streamed = list(stream(model, io.BytesIO(pcm), 10.0, 5.0))
    assert len(streamed) == 4 and model.stage_session.clips["audio"] == 4 == model.session.clips["features"]


@pytest.mark.slow
def test_stream_prints_each_window_as_the_file_path_scores_it(utterance_export, tmp_path):
    rng = np.random.default_rng(0)
    wave = (rng.normal(0, 0.1, 16000 * 61 + 7000)).clip(-1, 1)  # 61.4 s: six whole windows and a tail
    pcm = (wave * 32767).astype("<i2")
    path = tmp_path / "long.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    streamed = rows(stream_cli(utterance_export, pcm.tobytes(), "--window", "10"))
    spans = [(10.0 * k, 10.0 * (k + 1)) for k in range(6)] + [(60.0, 61.438)]
    assert [(w["start"], w["end"]) for w in streamed] == spans
    pieces = []  # each window as a file of its own: what a stream's window is scored as
    for k, (start, end) in enumerate(spans):
        pieces.append(tmp_path / f"window{k}.wav")
        sf.write(pieces[-1], pcm[int(start * 16000) : int(round(end * 16000))], 16000, subtype="PCM_16")
    for a, b in zip(streamed, rows(predict_cli("--model", utterance_export, *pieces, "--window", "10"))):
        assert a["emotion"] == b["emotion"]
        assert max(abs(a["probs"][c] - b["probs"][c]) for c in a["probs"]) <= 1e-6
    # A WAV stream (header first) says the same; a hop gives overlapping windows.
    as_wav = stream_cli(utterance_export, path.read_bytes(), "--window", "10", "--hop", "5")
    starts = [w["start"] for w in rows(as_wav)]
    assert starts[:4] == [0.0, 5.0, 10.0, 15.0] and rows(as_wav)[2]["probs"] == streamed[1]["probs"]


def test_stream_memory_is_bounded_by_the_window(utterance_export, tmp_path):
    """Ten minutes through the pipe, read in small blocks: the peak RSS stays that of a short stream."""
    peak = {}
    for minutes in (0.5, 10):
        script = ("import resource, sys, io, numpy as np; from ser.serving.predict import stream; "
                  "from ser.serving.runtime import ExportedModel; m = ExportedModel(sys.argv[1]); "
                  f"n = int({minutes} * 60 * 16000); rng = np.random.default_rng(0)\n"
                  "class Pipe(io.RawIOBase):\n"
                  "    left = n * 2\n"
                  "    def read(self, size=-1):\n"
                  "        size = min(size, self.left, 1 << 16); self.left -= size\n"
                  "        return (rng.normal(0, 3000, size // 2)).astype('<i2').tobytes()\n"
                  "windows = sum(1 for _ in stream(m, Pipe(), 10.0))\n"
                  "print(windows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", script, str(utterance_export)], capture_output=True,
                             text=True, timeout=300, cwd=REPO)
        assert out.returncode == 0, out.stderr[-2000:]
        windows, peak[minutes] = map(int, out.stdout.split())
        assert windows == minutes * 6
    assert peak[10] < peak[0.5] * 1.1  # 10 min of float32 alone would be +38 MB


def test_a_stream_it_cannot_read_gets_one_line_after_the_windows_read_so_far(utterance_export, tmp_path):
    pcm = (np.random.default_rng(0).normal(0, 0.1, 16000 * 21) * 32767).astype("<i2").tobytes()
    cut = stream_cli(utterance_export, pcm + b"\x01", "--window", "10")
    assert cut.returncode == 2 and len(cut.stdout.splitlines()) == 3  # 0-10, 10-20 and the 1 s tail
    assert cut.stderr.decode().strip().splitlines()[-1].startswith("ser-predict: error: the stream ended mid-sample")
    path = tmp_path / "48k.wav"
    sf.write(path, np.zeros(48000, dtype=np.float32), 48000, subtype="PCM_16")
    other_rate = stream_cli(utterance_export, path.read_bytes())
    assert other_rate.returncode == 2 and b"Traceback" not in other_rate.stderr
    assert b"the WAV stream is 48000 Hz; this model reads 16000 Hz" in other_rate.stderr
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000, subtype="FLOAT")
    float_wav = stream_cli(utterance_export, path.read_bytes())
    assert float_wav.returncode == 2 and b"--stream reads 16-bit PCM" in float_wav.stderr


def test_int8_is_asked_of_an_export_that_has_it(utterance_export, tmp_path):
    sf.write(tmp_path / "clip.wav", np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
    proc = predict_cli("--model", utterance_export, tmp_path / "clip.wav", "--int8")
    assert proc.returncode == 2 and "holds no int8 graph: export it with ser-export --quantize int8" in proc.stderr
    proc = predict_cli("--ckpt", tmp_path / "any.ckpt", tmp_path / "clip.wav", "--int8")
    assert proc.returncode == 2 and "--int8 scores an exported model's int8 graph" in proc.stderr


def test_an_export_answers_every_readable_file_of_a_damaged_folder_and_exits_3(utterance_export, tmp_path):
    answered, skipped = damaged_folder(tmp_path / "mixed")
    assert_answered_and_skipped(predict_cli("--model", utterance_export, tmp_path / "mixed"), answered, skipped)


def test_a_damaged_stream_is_one_line_and_exit_2_never_a_traceback(utterance_export, tmp_path):
    damaged_folder(tmp_path / "mixed")
    for name in ("empty.wav", "truncated_header.wav", "eight_channels_96k_float.wav"):
        proc = stream_cli(utterance_export, (tmp_path / "mixed" / name).read_bytes())
        said = proc.stderr.decode().strip().splitlines()
        assert proc.returncode == 2 and not proc.stdout, name
        assert len(said) == 1 and said[0].startswith("ser-predict: error: the "), (name, said)
    # Random bytes are valid 16-bit PCM: answered, as any raw stream is.
    noise = stream_cli(utterance_export, (tmp_path / "mixed" / "random_bytes.wav").read_bytes())
    assert noise.returncode == 0 and len(noise.stdout.splitlines()) == 1
