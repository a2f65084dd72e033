"""``ser-export --quantize int8``: a second graph beside the float one, and what it costs.

onnxruntime's dynamic quantisation stores the weights of the network's MatMul, Gemm, LSTM and
attention operators as int8 and quantises their inputs on the fly. Convolutions stay float: their
int8 kernel (ConvInteger) runs 3x slower than the float one on a CPU (measured on the CNN-GRU), and
the features graph (the log-mel as MatMuls) stays float, since rounding a spectrum's basis would
move every frame. The float graph remains the default and keeps its parity check; the int8 one is
measured against it before it is written, on the run's own test split where its clips are at hand:
clips per second of each, the largest probability change and the change of test UAR.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np

from ser.evidence import results as results_file
from ser.metrics import scores
from ser.serving.predict import predict
from ser.serving.runtime import INT8_GRAPH, MODEL_GRAPH, ExportedModel

QUANTIZED_OPS = ["MatMul", "Gemm", "LSTM", "Attention"]
SPEED_ROUNDS = 3  # the float and int8 graphs take turns; each one's fastest round counts


def quantize(folder: Path, run: Path | None, probes: list[Path]) -> dict:
    """Write ``folder``/model.int8.onnx from its model.onnx and return what ser.json says of it:
    measured on the test clips of ``run`` (its test_predictions.csv) if they can be read, else on
    ``probes`` (files)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        # onnxruntime's recommended first step (shape inference and graph clean-up); its symbolic
        # shape pass cannot follow a graph of any batch and length, and is not needed for weights.
        prepared = Path(scratch) / MODEL_GRAPH
        quant_pre_process(str(folder / MODEL_GRAPH), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(folder / INT8_GRAPH), weight_type=QuantType.QInt8,
                         op_types_to_quantize=QUANTIZED_OPS)
    clips = _test_clips(run)
    measured_on = "the run's test split" if clips else "probe clips (the run's test clips are not at hand)"
    by_speaker = clips or {"probes": [(path, "") for path in probes]}
    models = {"float": ExportedModel(folder), "int8": ExportedModel(folder, int8=True)}
    answers, seconds = _answers_and_seconds(models, by_speaker)
    count = sum(len(c) for c in by_speaker.values())
    record = {"graph": INT8_GRAPH, "quantized_ops": QUANTIZED_OPS, "measured_on": measured_on, "clips": count,
              "clips_per_second": {k: round(count / s, 1) for k, s in seconds.items()},
              "speedup": round(seconds["float"] / seconds["int8"], 3),
              "max_probability_change": float(np.abs(answers["float"] - answers["int8"]).max()),
              "test_uar": None}
    classes = models["float"].reading.classes
    if clips and classes:
        truth = [classes.index(label) for files in by_speaker.values() for _, label in files]
        uar = {k: _uar(truth, a[:, : len(classes)].argmax(1), len(classes)) for k, a in answers.items()}
        record["test_uar"] = {**uar, "change": uar["int8"] - uar["float"]}
    return record


def _test_clips(run: Path | None) -> dict[str, list[tuple[Path, str]]]:
    """Each test speaker's (file, true class) from the run's test_predictions.csv; {} if any is gone."""
    rows = results_file.read_predictions(run) if run is not None else []
    clips: dict[str, list[tuple[Path, str]]] = {}
    for row in rows:
        clips.setdefault(row["speaker"], []).append((Path(row["path"]), row.get("true", "")))
    if not all(path.is_file() for files in clips.values() for path, _ in files):
        return {}
    return clips


def _answers_and_seconds(models: dict, by_speaker: dict) -> tuple[dict, dict]:
    """Each model's readouts of every clip (one ser-predict call per speaker, as the test step
    standardised per speaker), and its fastest round's seconds, the models taking turns."""
    answers, seconds = {}, {k: float("inf") for k in models}
    for _ in range(SPEED_ROUNDS):
        for name, model in models.items():
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):  # predict's note on speakers, once per call
                rows = [row for files in by_speaker.values() for row in predict(model, [p for p, _ in files])]
            seconds[name] = min(seconds[name], time.perf_counter() - start)
            answers[name] = np.array([_values(row, model.reading) for row in rows])
    return answers, seconds


def _values(row: dict, reading) -> list[float]:
    return [row["probs"][c] for c in reading.classes] + [row["attributes"][a] for a in reading.attributes]


def _uar(truth: list[int], predicted: np.ndarray, classes: int) -> float:
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (np.array(truth), predicted), 1)
    return float(scores(confusion)["uar"])
