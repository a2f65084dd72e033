"""ser-export: a trained model as a folder that runs anywhere, without the training stack.

    ser-export logs/train/runs/<run> exported/          # the checkpoint the run's test scored
    ser-export path/to/last.ckpt exported/
    ser-predict --model exported/ clip.wav               # onnxruntime, numpy, soundfile, soxr only

The folder holds ``model.onnx`` (audio in, the task's readout out: probabilities, attribute
values), ``ser.json`` (what the runtime needs: classes, rate, window, normalisation, inputs; owned by
``ser.serving.runtime``) and a model card ``README.md`` (Hugging Face's format) with the run's scores.

* Log-mel and MFCC networks and pretrained encoders: the front end is inside the graph (the
  windowed DFT and mel filters as MatMuls, ``MatmulMelPower``), so a waveform goes in, with each clip's length:
  batches of any size and length.
* Per-utterance normalisation is in the graph. A model normalising per speaker is two graphs, as
  the checkpoint is two steps in ser-predict: ``features.onnx`` gives each clip's unnormalised
  log-mel, once; the speaker's statistics are gathered over it, and ``model.onnx`` reads the log-mel
  with the statistics (``speaker_mean``, ``speaker_std``, float64, as the checkpoint applies them).
  ``ser.json`` keeps the training speakers' pooled statistics for a speaker with no other audio.
* eGeMAPS models: openSMILE cannot live in an ONNX graph; ``model.onnx`` is the head on the 88
  functionals, and the runtime computes them with openSMILE beside it.
* Whisper encoders: their log-mel (``transformers``' feature extractor, outside the network in
  training) is inside the graph as ``WhisperLogMel``, one 30 s window per clip; ser-predict's
  windows are shorter (``max_window_seconds`` in ser.json).

Every export is checked before it is written: onnxruntime must answer as the checkpoint does on
probe clips of several lengths, alone and in a padded batch, within ``--tolerance`` (1e-4);
otherwise nothing is written and one paragraph says why.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # the prediction-only install scores exports; making one needs the training stack
    sys.exit('ser-export needs torch and the exporter: pip install "ser[train,export]" (or ".[dev]")')

from ser.errors import UserError
from ser.evidence import results as results_file
from ser.frontends.encoders import WHISPER_SECONDS
from ser.frontends.normalize import SpeakerStatistics
from ser.module import SERModule
from ser.serving.runtime import (
    MODEL_GRAPH,
    STAGE_GRAPH,
    CheckpointModel,
    ExportedModel,
    write_manifest,
)

log = logging.getLogger(__name__)
TOLERANCE = 1e-4  # the largest difference of any readout value, onnxruntime against torch
OPSET = 18  # the exporter's current default
PROBE_SECONDS = (0.13, 0.7, 1.9, 4.1)  # probe clip lengths: shorter than a CNN's pooling, to several windows of it
WINDOW_SECONDS = 10.0  # ser-predict's window: what the model was trained on (data.max_seconds)


class ExportRefused(UserError):
    pass


class ReadoutGraph(nn.Module):
    """The model from its input to the task's readout: what model.onnx computes."""

    def __init__(self, module: SERModule):
        super().__init__()
        self.module = module

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.module.task.readout(self.module(inputs, lengths))


class SpeakerReadoutGraph(ReadoutGraph):
    """The same, standardising by the speaker's statistics it is given."""

    def forward(self, inputs, lengths, speaker_mean, speaker_std):
        statistics = SpeakerStatistics(speaker_mean, speaker_std)
        return self.module.task.readout(self.module(inputs, lengths, statistics))


class LogMelGraph(nn.Module):
    """The unnormalised log-mel a speaker's statistics are gathered over: features.onnx."""

    def __init__(self, module: SERModule):
        super().__init__()
        self.frontend = module.frontend

    def forward(self, audio, lengths):
        return self.frontend.log_mel(audio, lengths)


def kind_of(frontend) -> str:
    from ser.frontends.encoders import EncoderFrontend
    from ser.frontends.functionals import EgemapsFrontend

    if isinstance(frontend, EgemapsFrontend):
        return "egemaps"
    if isinstance(frontend, EncoderFrontend):
        return "encoder"
    return frontend.kind


def export(source: str | Path, out: str | Path, tolerance: float = TOLERANCE, quantize: str | None = None) -> Path:
    """Export the checkpoint ``source`` names (a run folder: the one its test scored) into ``out``."""
    ckpt, results = _resolve(Path(source))
    return export_module(SERModule.from_checkpoint(ckpt), out, tolerance, ckpt, results, quantize)


def export_module(module: SERModule, out: str | Path, tolerance: float = TOLERANCE, ckpt: Path | None = None,
                  results: dict | None = None, quantize: str | None = None) -> Path:
    """Export a trained ``module`` (from ``ckpt``, tested as ``results`` say) into ``out``, or
    refuse (:class:`ExportRefused`) and write nothing; with ``quantize="int8"`` an int8 graph
    beside the float one, measured against it (``ser.serving.quantize``)."""
    module, results = module.eval(), results or {}
    kind = kind_of(module.frontend)
    _check_exportable(module, kind)
    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=".ser-export-", dir=out.parent if out.parent.exists() else None))
    try:
        manifest = _write_graphs(module, kind, staging)
        manifest |= {"source": provenance(ckpt, results.get("_path")), "ser": _version()}
        write_manifest(staging, manifest)
        worst = parity(ExportedModel(staging), CheckpointModel(module), probe_clips(module.sample_rate))
        if not worst <= tolerance:
            raise ExportRefused(
                f"the export of {ckpt or 'this model'} is not faithful: on probe clips onnxruntime's readout differs from the "
                f"checkpoint's by up to {worst:.2e}, more than the tolerance {tolerance:g}. Nothing was written. "
                "This is a bug of the exporter or of onnxruntime for this architecture: use the checkpoint "
                "(ser-predict --ckpt), or report it with the model config.")
        manifest["parity"] = {"max_abs_difference": worst, "tolerance": tolerance,
                              "probe_seconds": list(PROBE_SECONDS)}
        if quantize == "int8":
            manifest["int8"] = _quantized(staging, results, module.sample_rate)
        write_manifest(staging, manifest)
        (staging / "README.md").write_text(model_card(manifest, results, module))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _quantized(folder: Path, results: dict, rate: int) -> dict:
    from ser.data.audio import write_wav
    from ser.serving.quantize import quantize

    run = Path(results["_path"]).parent if results.get("_path") else None
    with tempfile.TemporaryDirectory() as probes:
        files = []
        for k, clip in enumerate(probe_clips(rate)):
            files.append(Path(probes) / f"probe{k}.wav")
            write_wav(files[-1], clip, rate)
        return quantize(folder, run, files)


def provenance(ckpt: Path | None, results_path: str | None) -> dict:
    """Where an export came from, without a path of the machine that trained it (an export is
    shipped elsewhere): the run folder's name, and the checkpoint and results.json relative to
    it; a checkpoint outside a run folder by its file name alone."""
    ckpt = ckpt.resolve() if ckpt is not None else None
    run = Path(results_path).resolve().parent if results_path else None
    if run is None and ckpt is not None and ckpt.parent.name == "checkpoints":
        run = ckpt.parent.parent
    if ckpt is not None:
        ckpt = ckpt.relative_to(run) if run is not None and ckpt.is_relative_to(run) else Path(ckpt.name)
    return {"run": run.name if run is not None else None,
            "checkpoint": ckpt.as_posix() if ckpt is not None else None,
            "results": "results.json" if results_path else None}


def _resolve(source: Path) -> tuple[Path, dict]:
    """(checkpoint, the run's results or {}) of a run folder or a checkpoint file."""
    if source.is_dir():
        found = source / "results.json"
        if not found.is_file():
            raise UserError(f"{str(source)!r} is a folder without results.json: give a run folder of train.py "
                            "or a checkpoint file")
        results = results_file.read(found)
        ckpt = Path(results.get("tested_ckpt") or source / "checkpoints" / "last.ckpt")
        return ckpt, {**results, "_path": str(found)}
    run = source.parent.parent / "results.json"
    results = results_file.read(run) if run.is_file() else {}
    return source, ({**results, "_path": str(run)} if results else {})


def _check_exportable(module: SERModule, kind: str) -> None:
    if module.hparams.get("compile"):
        log.info("model.compile=true: the export traces the uncompiled network (the same weights)")


def _version() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("ser")
    except PackageNotFoundError:
        release = None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                            text=True).stdout.strip() or None
    return {"version": release, "commit": commit}


def _write_graphs(module: SERModule, kind: str, folder: Path) -> dict:
    """model.onnx (and features.onnx); what ser.json says of them."""
    frontend = module.frontend
    rate = module.sample_rate
    per_speaker = frontend.speaker_normalizer() is not None
    examples = [int(s * rate) for s in (3.0, 1.7, 0.9)]
    audio = torch.from_numpy(np.stack([_probe(rate, examples[0], seed) for seed in range(3)]))
    lengths = torch.tensor(examples)
    graphed = _graph_ready(module, kind)
    # A per-speaker model reads its frozen stage's output, as the checkpoint does in ser-predict:
    # each clip's log-mel is computed once (features.onnx), for the speaker's statistics and the score.
    reads_stage = kind == "egemaps" or (per_speaker and kind in ("logmel", "mfcc"))
    stage = None
    narrowest = {"model": None, "features": None}  # by graph (file stem)
    if kind == "egemaps":  # the head on the functionals; openSMILE runs beside it
        inputs, in_lengths, input_name, time_axis = frontend.functionals(audio, lengths), torch.ones(3, dtype=torch.long), \
            "features", None
    elif reads_stage:
        narrowest["features"] = max(frontend.min_samples, _export(
            LogMelGraph(graphed), (audio, lengths), ["audio", "lengths"], ["features", "frames"], folder / STAGE_GRAPH, 1))
        stage = STAGE_GRAPH
        with torch.no_grad():
            (inputs, in_lengths), input_name, time_axis = frontend.log_mel(audio, lengths), "features", 2
    else:
        inputs, in_lengths, input_name, time_axis = audio, lengths, "audio", 1
    graph_cls = SpeakerReadoutGraph if per_speaker else ReadoutGraph
    args = (inputs, in_lengths)
    names = [input_name, "lengths"]
    if per_speaker:
        statistics = frontend.pooled.statistics()
        args += (statistics.mean.clone(), statistics.std.clone())
        names += ["speaker_mean", "speaker_std"]
    narrowest["model"] = _export(graph_cls(graphed), args, names, ["readout"], folder / MODEL_GRAPH, time_axis)
    if input_name == "audio":  # the graph keeps no branch for a clip shorter than one window
        narrowest["model"] = max(frontend.min_samples, narrowest["model"])
    pooled = None
    if per_speaker and frontend.pooled.known:
        pooled = {"mean": frontend.pooled.mean.tolist(), "std": frontend.pooled.std.tolist(),
                  "frames": float(frontend.pooled.frames)}
    return {
        "task": module.task.name,
        "reading": module.task.reading().to_json(),
        "sample_rate": rate,
        "window_seconds": WINDOW_SECONDS,
        # The graph holds one Whisper window per clip; ser-predict keeps its windows within it.
        "max_window_seconds": WHISPER_SECONDS if kind == "encoder" and frontend.whisper else None,
        "min_samples": frontend.min_samples,
        "narrowest": narrowest,
        "frontend": _frontend_record(frontend, kind),
        "inputs": "stage" if reads_stage else "audio",
        "per_speaker": {"width": int(frontend.pooled.mean.numel()), "pooled": pooled} if per_speaker else None,
        "graphs": {"model": MODEL_GRAPH, "stage": stage, "opset": OPSET},
    }


def _graph_ready(module: SERModule, kind: str) -> SERModule:
    """A copy of ``module`` as its graphs compute it: a spectral front end's DFT by MatMuls
    (onnxruntime's STFT operator is several times slower than torch's FFT; ``benchmarks/dft.py``),
    an encoder's LoRA adapters merged into its weights (one ordinary encoder; the parity check
    compares it with the unmerged ``module``), and no parameter needing a gradient (else torch
    decomposes an LSTM into one step per frame, which fixes the graph to the example's frame count)."""
    copy = deepcopy(module)
    if kind == "encoder":
        copy.frontend.merge_adapters()
    if kind in ("logmel", "mfcc", "encoder"):
        copy.frontend.compute_by_matmul()
    return copy.requires_grad_(False)


def _frontend_record(frontend, kind: str) -> dict:
    record = {"kind": kind, "normalize": frontend.normalize}
    if kind in ("logmel", "mfcc"):
        record |= {"n_fft": frontend.n_fft, "hop_length": frontend.hop_length, "n_mels": frontend.n_mels}
    elif kind == "egemaps":
        record |= {"feature_set": frontend.feature_set}
    elif kind == "encoder":
        record |= {"encoder": frontend.name, "states": frontend.states}
    return record


def _export(graph: nn.Module, args: tuple, input_names: list[str], output_names: list[str], path: Path,
            time_axis: int | None) -> int | None:
    """Write ``graph`` as ONNX with a dynamic batch (and time) axis; the narrowest padded batch
    width (samples or frames) the trace holds for (torch.export narrows the range where the code
    branches on it)."""
    dynamic = torch.export.Dim.DYNAMIC
    shapes = [{0: dynamic, **({time_axis: dynamic} if time_axis else {})}, {0: dynamic}]
    shapes += [None] * (len(args) - 2)
    try:
        with torch.no_grad(), _recurrent_layers_kept_whole():
            program = torch.export.export(graph, args, dynamic_shapes=tuple(shapes), strict=False)
            onnx_program = torch.onnx.export(program, args, input_names=input_names, output_names=output_names,
                                             opset_version=OPSET, dynamo=True, verbose=False)
    except Exception as err:  # noqa: BLE001 - the exporters raise many kinds; one paragraph says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportRefused(f"this model cannot be exported to ONNX: {type(err).__name__}: {first[:400]}. "
                            "Nothing was written; score it with ser-predict --ckpt.") from err
    onnx_program.save(str(path))
    if time_axis is None:
        return None
    width = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == width)
    size = node.meta["val"].shape[time_axis]
    if isinstance(size, int):
        raise ExportRefused("the export fixed the clip length: this model's graph would read one length only")
    return int(program.range_constraints[size.node.expr].lower)


@contextmanager
def _recurrent_layers_kept_whole():
    """torch.export turns oneDNN off while it traces, and without it torch decomposes an LSTM
    into one cell per frame, which fixes the graph to the example's frame count (a log-mel
    input is then refused; an audio input was silently narrowed to ~3 s). With oneDNN on, the LSTM
    stays one operator over any length, as the GRU always does; every other backend stays off.
    Checked by the parity tests of the LSTM's exports; a torch without this hook traces as before."""
    try:
        from torch.export import _trace as trace
    except ImportError:
        trace = None
    original = getattr(trace, "_ignore_backend_decomps", None)
    if original is None:
        yield
        return

    @contextmanager
    def all_but_onednn():
        with original():
            torch.backends.mkldnn.set_flags(True)
            yield

    trace._ignore_backend_decomps = all_but_onednn
    try:
        yield
    finally:
        trace._ignore_backend_decomps = original


def probe_clips(rate: int) -> list[np.ndarray]:
    return [_probe(rate, int(s * rate), seed) for seed, s in enumerate(PROBE_SECONDS)]


def _probe(rate: int, samples: int, seed: int) -> np.ndarray:
    """A voiced-like probe: a gliding harmonic tone with noise (speech-like spectra keep the
    log-mel away from its floor, where a float difference would be magnified)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    pitch = 120 + 80 * seed + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * voiced + 0.02 * rng.standard_normal(samples)).astype(np.float32)


def parity(exported, checkpoint, clips: list[np.ndarray]) -> float:
    """The largest difference between the two models' readouts of ``clips``, each alone and all in
    one padded batch, standardised (per-speaker models) by the clips' statistics and by the pooled
    ones; each side gathers the statistics with its own stage (features.onnx against torch's)."""
    from ser.serving.predict import _readouts, _stage_outputs

    def inputs(model, batch):
        return _stage_outputs(model, batch, len(batch)) if model.reads == "stage" else batch

    choices = [(None, None)]
    if checkpoint.per_speaker:
        own = tuple(SpeakerStatistics.of(rows.T for rows in _stage_outputs(m, clips, len(clips)))
                    for m in (exported, checkpoint))
        choices = [own] + ([(exported.pooled, checkpoint.pooled)] if checkpoint.pooled else [])
    worst = 0.0
    for batch in [[clip] for clip in clips] + [clips]:
        of_batch = inputs(exported, batch), inputs(checkpoint, batch)
        for of_exported, of_checkpoint in choices:
            a = np.stack(_readouts(exported, of_batch[0], len(batch), of_exported))
            b = np.stack(_readouts(checkpoint, of_batch[1], len(batch), of_checkpoint))
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def model_card(manifest: dict, results: dict, module: SERModule) -> str:
    """README.md in the Hugging Face model-card format: YAML metadata, then what a user must know."""
    reading = manifest["reading"]
    frontend = manifest["frontend"]
    metrics = results_file.metrics_of(results) if results else ()
    datasets = [results["corpus"]] if results.get("corpus") else []
    licence, licence_note = _weights_licence(frontend)
    header = ["---", "library_name: ser", "pipeline_tag: audio-classification",
              "tags:", "- speech-emotion-recognition", "- audio-classification", "- onnx", f"- {manifest['task']}",
              f"license: {licence}"]
    if datasets:
        header += ["datasets:", *[f"- {d}" for d in datasets]]
    if metrics:
        header += ["metrics:", *[f"- {m.split('/', 1)[1]}" for m in metrics]]
    header += ["---", ""]
    title = f"{results.get('model', 'ser model')} on {results.get('data', 'an unnamed corpus')}"
    lines = [f"# {title}", "",
             f"A speech emotion recognition model trained with ser (version {manifest['ser']['version']}, "
             f"commit {manifest['ser']['commit']}), exported to ONNX with its front end "
             f"({_frontend_text(frontend)}).", "",
             "## Use", "", "```bash", install_line(frontend),
             "ser-predict --model THIS_FOLDER clip.wav more_clips/", "```", "",
             f"ser is not on a package index: `{SOURCE}` is a checkout of ser (commit "
             f"{manifest['ser']['commit']}), or a wheel built from one (`pip wheel --no-deps {SOURCE}`).", "",
             f"Input: mono audio at {manifest['sample_rate']} Hz (ser-predict resamples any file), scored in "
             f"windows of {manifest['window_seconds']:g} s. Output: "
             + (f"probabilities of {', '.join(reading['classes'])}" if reading["classes"] else "")
             + (" and " if reading["classes"] and reading["attributes"] else "")
             + (f"{', '.join(reading['attributes'])} on [0, 1]" if reading["attributes"] else "") + ".", ""]
    if manifest["per_speaker"]:
        lines += ["The model standardises its features by the speaker's statistics, as it was trained: give "
                  "ser-predict several files of one speaker at once (or `--speaker-stats`); a lone file is "
                  "standardised by the training speakers' pooled statistics, which usually costs accuracy.", ""]
    lines += usage_without_ser(manifest)
    lines += ["## Training and evaluation", ""]
    if results:
        lines += [f"- corpus: {results.get('corpus')} (`data={results.get('data')}`), task {manifest['task']}",
                  f"- split: {results.get('split')} ({results.get('protocol')})"
                  + (f", fold {results['fold']}" if "fold" in results else ""),
                  f"- clips: {results.get('n_train')} train, {results.get('n_val')} validation, "
                  f"{results.get('n_test')} test", f"- seed: {results.get('seed')}", "",
                  "| test metric | value [95% interval, test speakers resampled] |", "|---|---|",
                  *[f"| {m} | {results_file.score_text(results, m)} |" for m in metrics], ""]
    else:
        lines += ["The checkpoint was exported without its run folder: no scores are known.", ""]
    lines += _int8_text(manifest.get("int8"))
    lines += ["## Intended use and limitations", "",
              "Research on speech emotion recognition. Acted-emotion corpora differ from everyday speech; "
              "scores on speakers, languages, microphones or emotions outside the training corpus can be far "
              "lower. Do not use it to make decisions about people.", "",
              "## Licence", "", licence_note, "",
              "## Parity", "",
              f"onnxruntime's readout equals the checkpoint's within {manifest['parity']['max_abs_difference']:.1e} "
              f"(tolerance {manifest['parity']['tolerance']:g}) on probe clips of "
              f"{', '.join(f'{s:g}' for s in manifest['parity']['probe_seconds'])} s, alone and in one padded batch.",
              ""]
    return "\n".join(header + lines)


def _int8_text(record: dict | None) -> list[str]:
    if not record:
        return []
    uar = record["test_uar"]
    change = (f"test UAR {uar['float']:.3f} with the float graph, {uar['int8']:.3f} with int8 ({uar['change']:+.3f})"
              if uar else "no test UAR (the run's test clips were not at hand)")
    speed = record["clips_per_second"]
    return ["## int8", "",
            f"`{record['graph']}` holds the network with int8 weights ({', '.join(record['quantized_ops'])}; "
            "onnxruntime's dynamic quantisation); `ser-predict --model THIS_FOLDER --int8` scores with it. Measured "
            f"against the float graph on {record['measured_on']} ({record['clips']} clips): {speed['int8']:g} "
            f"against {speed['float']:g} clips/s ({record['speedup']:.2f}x), probabilities moved by up to "
            f"{record['max_probability_change']:.1e}, {change}.", ""]


SOURCE = "PATH_TO_SER"  # the card's stand-in for where ser's source is


def install_line(frontend: dict) -> str:
    return f'pip install "{SOURCE}[predict{",egemaps" if frontend["kind"] == "egemaps" else ""}]"'


def usage_without_ser(manifest: dict) -> list[str]:
    """The card's lines that score one WAV with onnxruntime, numpy and soundfile alone, exactly
    as ``ser-predict --model THIS_FOLDER clip.wav`` does (tested by running them)."""
    if manifest["frontend"]["kind"] == "egemaps":
        return ["Without ser: the graph reads openSMILE's eGeMAPS functionals, computed beside it as ser "
                "computes them; score with ser-predict.", ""]
    if manifest["per_speaker"] and not manifest["per_speaker"]["pooled"]:
        return ["Without ser: this model needs a speaker's statistics and holds no pooled training ones; score "
                "several files of the speaker at once with ser-predict.", ""]
    rate = manifest["sample_rate"]
    code = ["import json", "import numpy as np, onnxruntime as ort, soundfile as sf", "",
            'folder = "THIS_FOLDER"', 'meta = json.load(open(f"{folder}/ser.json"))',
            f'wave, rate = sf.read("clip.wav", dtype="float32", always_2d=True)  # {rate} Hz, at most '
            f'{manifest["window_seconds"]:g} s (ser-predict resamples and windows any file)',
            'assert rate == meta["sample_rate"]',
            "wave = wave.mean(axis=1, dtype=np.float64)  # mono",
            "wave -= wave.mean()  # no DC offset, peaks within full scale: as ser reads every file",
            "audio = (wave / max(1.0, np.abs(wave).max())).astype(np.float32)[None]  # [clips, samples]",
            "lengths = np.array([audio.shape[1]])  # each row's real samples: a batch is zero-padded to its longest",
            "",
            "def run(graph, **inputs):  # each graph's batch is at least meta['narrowest'][graph] wide",
            "    name = next(iter(inputs))",
            "    short = (meta['narrowest'][graph] or 0) - inputs[name].shape[-1]",
            "    if short > 0:",
            "        inputs[name] = np.pad(inputs[name], [(0, 0)] * (inputs[name].ndim - 1) + [(0, short)])",
            '    return ort.InferenceSession(f"{folder}/{graph}.onnx").run(None, inputs)', ""]
    if manifest["inputs"] == "stage":
        code += ["# Per-speaker normalisation: the log-mel (features.onnx), then the network on it with the",
                 "# speaker's mean and std of each band (float64); here the training speakers' pooled ones,",
                 "# as ser-predict takes for a lone file (give it several files of the speaker instead).",
                 'features, frames = run("features", audio=audio, lengths=lengths)  # [clips, bands, frames], real frames',
                 'pooled = meta["per_speaker"]["pooled"]  # mean and std: [bands] each',
                 'values = run("model", features=features, lengths=frames, speaker_mean=np.array(pooled["mean"]),',
                 '             speaker_std=np.array(pooled["std"]))[0][0]']
    else:
        code += ['values = run("model", audio=audio, lengths=lengths)[0][0]']
    code += ["# values: [values] of the one clip (the output 'readout' is [clips, values]): the class",
             "# probabilities, then any attribute values on [0, 1], named in ser.json:",
             'names = meta["reading"]["classes"] + meta["reading"]["attributes"]',
             "print(json.dumps(dict(zip(names, values.tolist()))))"]
    return ["Without ser, with onnxruntime, numpy and soundfile alone (`pip install onnxruntime numpy soundfile`), "
            "one WAV is scored like this:", "", "```python", *code, "```", ""]


def _frontend_text(frontend: dict) -> str:
    kind = frontend["kind"]
    if kind == "egemaps":
        return f"openSMILE {frontend['feature_set']} functionals, computed beside the graph"
    if kind == "encoder":
        return f"the pretrained encoder {frontend['encoder']}"
    return f"{kind}, normalised per {frontend['normalize']}" if frontend["normalize"] != "none" else kind


def _weights_licence(frontend: dict) -> tuple[str, str]:
    """The model card's licence: a pretrained encoder's, where its own card says it."""
    if frontend["kind"] != "encoder":
        return "other", ("The weights were trained from scratch by ser on the corpus above: the corpus's own "
                         "licence governs what may be done with them.")
    card = Path(frontend["encoder"]).expanduser() / "README.md"
    if card.is_file():
        for line in card.read_text().splitlines():
            if line.startswith("license:"):
                licence = line.split(":", 1)[1].strip()
                return licence, (f"The encoder's weights ({frontend['encoder']}) are under {licence}, as its model "
                                 "card says; the head was trained by ser on the corpus above, whose licence also "
                                 "applies.")
    return "other", (f"The model holds the pretrained encoder {frontend['encoder']}, under its own licence: see its "
                     "model card before you share or use this export. The head was trained by ser on the corpus "
                     "above, whose licence also applies.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ser-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a run folder of train.py, or a checkpoint file")
    parser.add_argument("out", help="the folder to write (replaced if it exists)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="largest readout difference from the checkpoint accepted (default %(default)g)")
    parser.add_argument("--quantize", choices=["int8"],
                        help="also write model.int8.onnx (onnxruntime's dynamic quantisation), measured on the "
                             "run's test split: speed, largest probability change, test UAR change "
                             "(ser.json and the card); ser-predict --model DIR --int8 scores with it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        out = export(args.source, args.out, args.tolerance, args.quantize)
    except UserError as err:
        print(f"ser-export: error: {err}", file=sys.stderr)
        return 2
    print(f"ser-export: wrote {out} (ser-predict --model {out} FILES)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
