"""ser-predict: emotion probabilities for audio files from a trained checkpoint or an exported model.

    ser-predict --ckpt logs/train/runs/<run>/checkpoints/last.ckpt clip.wav more/ ...
    ser-predict --model exported/ clip.wav more/ ...         # ser-export's folder: no torch needed
    ser-predict --model egemaps/ --model cnn_gru/ clip.wav   # several models: their answers averaged
    arecord -f S16_LE -r 16000 | ser-predict --model exported/ --stream -

Prints one JSON object per file, in the order given (folders sorted):
{"path": ..., "emotion": ..., "probs": {emotion: p}, "windows": [{"start": s, "end": s,
"emotion": ..., "probs": {...}}, ...]}; a model of emotion attributes (task=attributes|both)
prints "attributes": {arousal, valence, dominance} on [0, 1] and, where the training corpus's
rating scale is known, "attributes_on_scale" on it. A file is scored in windows of ``--window`` seconds
(10 by default, the length models are trained on), so a recording of any length costs the
memory of a few windows; the whole-file result is the windows' probabilities averaged by
their duration. Any sample rate and channel count is read (mixed to mono, resampled to the
model's rate); a file that cannot be read is named on stderr with the reason and skipped, the
others answered.

Exit status: 0 when every input was answered; 3 when some were skipped (named on stderr, every
other file answered), so that a script can tell a partial answer from a whole one; 2 for a
usage or model error, or a stream it cannot read (after the windows read so far).

A model that normalises per speaker (``features.normalize=speaker``, the default of the log-mel,
MFCC and eGeMAPS front ends) is given its inputs as training and the test step gave them: the
files of one call are taken as one speaker's clips, and every window is standardised by the
statistics of all of them, with the front end's own normaliser. ``--speaker-stats FILES_OR_DIR``
takes the speaker's statistics from other clips of theirs (enrolment) instead. One file of an
unknown speaker is standardised by the pooled statistics of the training speakers, which the
checkpoint keeps, with a warning: it is scored, but less well than with its speaker's own.

``--stream -`` reads standard input: raw 16-bit little-endian mono PCM at the model's rate, or a
WAV stream of 16-bit PCM at that rate (any channel count, mixed to mono), and prints one JSON
line per window of ``--window`` seconds as soon as it is complete, one every ``--hop`` seconds
(default: the window). Memory holds one window, whatever the stream's length. A stream is one
unknown speaker's: a per-speaker model uses ``--speaker-stats`` or the pooled statistics. Each
window is scored as a file holding just its samples would be (its own DC offset removed).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ser.data.audio import DECODE_THREADS, centred, try_load_mono
from ser.data.corpora import AUDIO_SUFFIXES
from ser.errors import UserError
from ser.frontends.normalize import SpeakerStatistics
from ser.serving.runtime import CheckpointModel, ExportedModel, Model


def expand(inputs: list[str]) -> list[Path]:
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{str(item)!r} is neither an audio file nor a folder")
    return files


WINDOW_SECONDS = 10.0  # as data.max_seconds: the longest clip a model sees in training


EXIT_SKIPPED = 3  # some inputs could not be read; every other one was answered


def predict(model: Model, files: list[Path], batch_size: int = 16, chunk_batches: int = 16,
            window_seconds: float = WINDOW_SECONDS, speaker_files: list[Path] | None = None,
            skipped: list[Path] | None = None) -> Iterator[dict]:
    """Probabilities for ``files``, yielded in their order, for each window and the whole file.

    Files are read ``batch_size * chunk_batches`` at a time on a thread pool, the next chunk
    while the model scores this one, so memory stays at two chunks whatever the folder's size.
    Within a chunk, windows of similar length are batched together: little padding, and the
    models are padding-invariant anyway.

    A model normalising per speaker first computes every window's frozen-stage output (log-mel,
    functionals), which the speaker's statistics are gathered over (those of ``speaker_files``
    if given, else of all ``files`` as one speaker's, else for a lone file the pooled training
    statistics); the call then holds all its windows.
    """
    for path, scored in _scored_files(model, files, batch_size, chunk_batches, window_seconds, speaker_files, skipped):
        yield _described(model.reading, path, scored, model.sample_rate)


def predict_fused(models: list[Model], files: list[Path], batch_size: int = 16, window_seconds: float = WINDOW_SECONDS,
                  speaker_files: list[Path] | None = None, skipped: list[Path] | None = None) -> Iterator[dict]:
    """As :func:`predict`, from several models of the same readout (classes, attributes) whose
    answers are averaged, window by window (``ser-fuse``'s fusion with equal weights): the
    mean of their probabilities (attributes: values)."""
    readings = {m.reading for m in models}
    if len(readings) > 1:
        raise UserError("the models given to fuse answer differently (classes, attributes or rating scale: "
                        f"{'; '.join(sorted(map(str, readings)))}); fuse models of the same task over the same classes")
    unread: list[list[Path]] = [[] for _ in models]
    members = [_scored_files(m, files, batch_size, 16, window_seconds, speaker_files, gone)
               for m, gone in zip(models, unread)]
    rate = models[0].sample_rate
    for answers in zip(*members):
        path = answers[0][0]
        spans = [[(round(a / m.sample_rate, 3), round(b / m.sample_rate, 3)) for a, b, _ in scored]
                 for m, (_, scored) in zip(models, answers)]
        if any(s != spans[0] for s in spans):
            raise UserError(f"{path}: the models cut it into different windows (their sample rates or shortest "
                            "windows differ), so their answers cannot be averaged window by window")
        mean = [sum(scored[i][2] for _, scored in answers) / len(answers) for i in range(len(spans[0]))]
        yield _described(models[0].reading, path, [(a, b, p) for (a, b, _), p in zip(answers[0][1], mean)], rate)
    if skipped is not None:
        skipped += unread[0]


def _described(reading, path: Path, scored: list[tuple[int, int, np.ndarray]], rate: int) -> dict:
    """A file's line: the windows' readouts averaged by their duration, and each window's."""
    whole = sum((b - a) * p for a, b, p in scored) / sum(b - a for a, b, _ in scored)
    return {"path": str(path), **reading.describe(whole),
            "windows": [{"start": round(a / rate, 3), "end": round(b / rate, 3), **reading.describe(p)}
                        for a, b, p in scored]}


def _scored_files(model: Model, files: list[Path], batch_size: int, chunk_batches: int, window_seconds: float,
                  speaker_files: list[Path] | None, skipped: list[Path] | None):
    """(file, [(start, end, readout) of each window, in samples]) of each readable file, in order."""
    rate = model.sample_rate
    size = max(1, int(window_seconds * rate))
    chunks = _windowed_chunks(files, rate, size, batch_size * chunk_batches, model.min_samples, skipped)
    statistics = None
    if model.per_speaker:
        entries, stages = [], []
        for chunk in chunks:  # the next chunk is decoded while this one's stage outputs are computed
            entries += chunk
            stages += _stage_outputs(model, [piece for _, _, pieces in chunk for piece in pieces], batch_size)
        chunks = [entries]
        statistics = _speaker_statistics(model, entries, stages, batch_size, speaker_files, size, skipped)
    for chunk in chunks:
        pieces = [piece for _, _, pieces_of in chunk for piece in pieces_of]
        if model.reads == "stage":
            pieces = stages if model.per_speaker else _stage_outputs(model, pieces, batch_size)
        readouts = iter(_readouts(model, pieces, batch_size, statistics))
        for path, spans_of, _ in chunk:
            yield path, [(a, b, next(readouts)) for a, b in spans_of]


def _windowed_chunks(files: list[Path], rate: int, size: int, chunk: int, shortest: int,
                     skipped: list[Path] | None) -> Iterator[list]:
    """Chunks of (path, window spans, window samples) of the readable files."""
    for decoded in _decoded_chunks(files, rate, chunk, skipped):
        readable = [(path, samples) for path, samples in decoded if samples is not None]
        spans = [windows(len(samples), size, shortest) for _, samples in readable]
        yield [(path, spans_of, [samples[a:b] for a, b in spans_of]) for (path, samples), spans_of in zip(readable, spans)]


def _speaker_statistics(model: Model, entries: list, stages: list[np.ndarray], batch_size: int,
                        speaker_files: list[Path] | None, size: int, skipped: list[Path] | None) -> SpeakerStatistics:
    """Whose statistics standardise the call's windows, said on stderr."""
    if speaker_files:
        return _enrolled(model, speaker_files, batch_size, size, skipped)
    if len(entries) >= 2:
        print(f"ser-predict: the {len(stages)} windows of these {len(entries)} files are taken as one speaker's "
              "clips (the model normalises per speaker); score each speaker's files in a call of their own",
              file=sys.stderr)
        return SpeakerStatistics.of(rows.T for rows in stages)
    return _pooled(model)


def _enrolled(model: Model, speaker_files: list[Path], batch_size: int, size: int,
              skipped: list[Path] | None = None) -> SpeakerStatistics:
    """The statistics of the windows of ``speaker_files`` (--speaker-stats), said on stderr."""
    enrolment = [piece for chunk in _windowed_chunks(speaker_files, model.sample_rate, size, 256, model.min_samples,
                                                     skipped)
                 for _, _, pieces in chunk for piece in pieces]
    if not enrolment:
        raise UserError("--speaker-stats: none of its files could be read")
    rows = _stage_outputs(model, enrolment, batch_size)
    print(f"ser-predict: the speaker's statistics come from the {len(rows)} windows of --speaker-stats",
          file=sys.stderr)
    return SpeakerStatistics.of(r.T for r in rows)


def _pooled(model: Model) -> SpeakerStatistics:
    if model.pooled is None:
        raise UserError("this model normalises per speaker and holds no pooled training statistics "
                        "(its checkpoint was written before ser kept them): give ser-predict several files of "
                        "the speaker at once, or --speaker-stats with other clips of theirs")
    print("ser-predict: warning: one unknown speaker's audio is standardised by the training speakers' pooled "
          "statistics, not its own, which usually costs accuracy; give several files of the speaker at once "
          "or --speaker-stats FILES", file=sys.stderr)
    return model.pooled


def pad(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clips (``[samples]`` or ``[width, frames]``) zero-padded along time into one float32
    batch, and their lengths (int64)."""
    lengths = np.array([clip.shape[-1] for clip in clips], dtype=np.int64)
    batch = np.zeros((len(clips), *clips[0].shape[:-1], int(lengths.max())), dtype=np.float32)
    for row, clip in zip(batch, clips):
        row[..., : clip.shape[-1]] = clip
    return batch, lengths


def _stage_outputs(model: Model, pieces: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """The frozen stage's output ``[width, frames]`` of each window, unnormalised; batched by
    length, so little padding is computed."""
    return _by_length(lambda batch: model.stage(*pad(batch)), pieces, batch_size)


def _by_length(compute, clips: list[np.ndarray], batch_size: int) -> list:
    """``compute`` of batches of clips of similar length, each result back in the clips' order."""
    by_length = sorted(range(len(clips)), key=lambda i: clips[i].shape[-1])
    results = [None] * len(clips)
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start : start + batch_size]
        for i, result in zip(rows, compute([clips[i] for i in rows])):
            results[i] = result
    return results


def windows(length: int, size: int, shortest: int) -> list[tuple[int, int]]:
    """[start, end) sample spans of consecutive windows of ``size`` covering a clip; a last piece
    shorter than ``shortest`` (too short to analyse) joins the window before it."""
    spans = [(start, min(start + size, length)) for start in range(0, length, size)] or [(0, length)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < shortest:
        spans[-2:] = [(spans[-2][0], length)]
    return spans


def _readouts(model: Model, clips: list[np.ndarray], batch_size: int,
              statistics: SpeakerStatistics | None) -> list[np.ndarray]:
    """What the model reports of each clip (probabilities, attribute values; averaged over a
    file's windows): clips are waveforms [samples] or stage outputs [width, frames]."""
    return [values.astype(np.float64) for values in
            _by_length(lambda batch: model.readout(*pad(batch), statistics), clips, batch_size)]


def _decoded_chunks(files: list[Path], sample_rate: int, size: int, skipped: list[Path] | None) -> Iterator[list]:
    """Chunks of (path, samples or None), each decoded while the previous one is scored; an
    unreadable file is named on stderr with its reason and appended to ``skipped``."""
    def read(path):
        samples, error = try_load_mono(path, sample_rate)
        if error is not None:
            print(f"skipped {path}: {error}", file=sys.stderr)
            if skipped is not None:
                skipped.append(path)  # list.append is atomic: safe from the pool's threads
        return path, samples

    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        pending = None
        for start in range(0, len(files), size):
            submitted = [pool.submit(read, path) for path in files[start : start + size]]
            if pending is not None:
                yield [future.result() for future in pending]
            pending = submitted
        if pending is not None:
            yield [future.result() for future in pending]


class StreamError(UserError):
    pass


def stream(model: Model, source: BinaryIO, window_seconds: float = WINDOW_SECONDS, hop_seconds: float | None = None,
           statistics: SpeakerStatistics | None = None, read_bytes: int = 1 << 16) -> Iterator[dict]:
    """One readout per window of a PCM or WAV stream, yielded as soon as the window is complete.

    Windows of ``window_seconds`` start every ``hop_seconds``; at the end, the samples no window
    has covered yet are scored as a last, shorter window (if long enough to analyse). Raises
    :class:`StreamError` (after the windows read so far) for a stream this model cannot read.
    """
    rate = model.sample_rate
    size = max(1, int(window_seconds * rate))
    hop = max(1, int((hop_seconds or window_seconds) * rate))
    if model.per_speaker and statistics is None:
        statistics = _pooled(model)
    samples = _pcm_samples(source, rate, read_bytes)
    held, held_start, next_start, covered = np.zeros(0, dtype=np.float32), 0, 0, 0
    ending = None
    while True:
        try:
            block = next(samples, None)
        except StreamError as err:
            block, ending = None, err
        if block is not None:
            held = np.concatenate([held, block])
        while held_start + len(held) >= next_start + size:  # a whole window is here
            yield _window(model, held[next_start - held_start : next_start - held_start + size], next_start, statistics)
            covered, next_start = next_start + size, next_start + hop
            drop = min(next_start - held_start, len(held))  # memory: only what a later window reads
            held, held_start = held[drop:], held_start + drop
        if block is None:
            break
    end = held_start + len(held)
    start = max(next_start, held_start)
    if end > covered and end - start >= model.min_samples:
        yield _window(model, held[start - held_start :], start, statistics)
        covered = end
    if ending is not None:
        raise ending
    if not covered:
        raise StreamError(f"the stream held {end} sample(s), fewer than the {model.min_samples} this model "
                          "needs to score a window: nothing was answered")


def _window(model: Model, samples: np.ndarray, start: int, statistics) -> dict:
    """One window of a stream, scored as the same samples in a file of their own would be."""
    clip = np.clip(centred(samples.astype(np.float64)), -1.0, 1.0).astype(np.float32)
    clip = clip if model.reads == "audio" else _stage_outputs(model, [clip], 1)[0]
    values = _readouts(model, [clip], 1, statistics)[0]
    rate = model.sample_rate
    return {"start": round(start / rate, 3), "end": round((start + len(samples)) / rate, 3),
            **model.reading.describe(values)}


def _pcm_samples(source: BinaryIO, rate: int, read_bytes: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks of a raw 16-bit little-endian PCM stream at ``rate``, or of a WAV
    stream (16-bit PCM at ``rate``, any channels: mixed to mono)."""
    head = _read_exactly(source, 4)
    channels = 1
    if head == b"RIFF":
        channels, head = _wav_header(source, rate), b""
    frame = 2 * channels
    pending = head
    while True:
        data = source.read(read_bytes)
        if not data:
            break
        pending += data
        whole = len(pending) - len(pending) % frame
        if whole:
            pcm = np.frombuffer(pending[:whole], dtype="<i2").reshape(-1, channels)
            pending = pending[whole:]
            yield (pcm.mean(axis=1, dtype=np.float64) / 32768.0).astype(np.float32)
    if pending:
        raise StreamError(f"the stream ended mid-sample ({len(pending)} byte(s) after the last whole "
                          f"{frame}-byte frame); the windows before it were scored")


def _read_exactly(source: BinaryIO, count: int) -> bytes:
    data = b""
    while len(data) < count:
        more = source.read(count - len(data))
        if not more:
            break
        data += more
    return data


def _wav_header(source: BinaryIO, rate: int) -> int:
    """Read a WAV header up to its data chunk (after "RIFF"); the channel count. Only what the
    model reads is accepted: 16-bit integer PCM at its rate."""
    if _read_exactly(source, 8)[4:] != b"WAVE":
        raise StreamError("the stream starts with RIFF but is not a WAV file")
    channels = None
    while True:
        header = _read_exactly(source, 8)
        if len(header) < 8:
            raise StreamError("the WAV stream ended before its data chunk")
        kind, length = header[:4], struct.unpack("<I", header[4:])[0]
        if kind == b"data":
            if channels is None:
                raise StreamError("the WAV stream has no fmt chunk before its data")
            return channels
        body = _read_exactly(source, length + length % 2)
        if len(body) < length or (kind == b"fmt " and length < 16):
            raise StreamError(f"the WAV stream's header is cut short (its {kind.decode('latin-1')!r} chunk)")
        if kind == b"fmt ":
            tag, channels, wav_rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is the sub-format's
                tag = struct.unpack("<H", body[24:26])[0]
            if tag != 1 or bits != 16:
                raise StreamError(f"the WAV stream is {bits}-bit {'PCM' if tag == 1 else f'format {tag}'}; "
                                  "--stream reads 16-bit PCM (arecord -f S16_LE)")
            if wav_rate != rate:
                raise StreamError(f"the WAV stream is {wav_rate} Hz; this model reads {rate} Hz: record at "
                                  f"{rate} Hz (arecord -r {rate}) or resample first (sox - -r {rate} -t wav -)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ser-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[],
                        help="a checkpoint written by train.py (needs the training stack); several --ckpt and "
                             "--model: their answers averaged (the fusion of ser-fuse, equal weights)")
    parser.add_argument("--model", action="append", default=[],
                        help="a folder written by ser-export (runs on onnxruntime alone)")
    parser.add_argument("inputs", nargs="*", help="audio files and/or folders (searched recursively)")
    parser.add_argument("--stream", metavar="-", help="read 16-bit PCM or WAV from standard input ('-')")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS,
                        help="seconds per scored window (default %(default)s)")
    parser.add_argument("--hop", type=float, help="--stream: seconds between window starts (default: --window)")
    parser.add_argument("--speaker-stats", nargs="+", action="extend", metavar="FILES_OR_DIR",
                        help="a model normalising per speaker: take the speaker's statistics from these "
                             "clips of theirs (default: from all the files scored in this call)")
    parser.add_argument("--device", help="--ckpt: the torch device (default: cuda where there is one)")
    parser.add_argument("--int8", action="store_true",
                        help="--model: score with its int8 graph (ser-export --quantize int8; its model card says "
                             "what that changed on the run's test split)")
    args = parser.parse_args(argv)
    if not args.ckpt and not args.model:
        parser.error("give the model to score with: --ckpt CHECKPOINT or --model EXPORT_DIR (several to fuse them)")
    if args.stream is not None and len(args.ckpt) + len(args.model) > 1:
        parser.error("--stream scores with one model: give one --ckpt or --model")
    if (args.stream is None) == (not args.inputs):
        parser.error("give audio files or folders, or --stream - (not both)")
    if args.stream not in (None, "-"):
        parser.error("--stream reads standard input: --stream -")
    skipped: list[Path] = []
    try:
        if args.int8 and not args.model:
            parser.error("--int8 scores an exported model's int8 graph: give --model")
        models = [*(ExportedModel(folder, int8=args.int8) for folder in args.model),
                  *(CheckpointModel.load(ckpt, args.device) for ckpt in args.ckpt)]
        for model in models:
            longest = getattr(model, "max_window_seconds", None)
            if longest and args.window > longest:
                parser.error(f"--window {args.window:g}: this export scores windows of at most {longest:g} s (a Whisper "
                             "encoder's window); give --window up to that, or score with the checkpoint (--ckpt)")
        model = models[0]
        speaker_files = expand(args.speaker_stats) if args.speaker_stats else None
        if args.stream:
            statistics = None
            if speaker_files and model.per_speaker:
                statistics = _enrolled(model, speaker_files, args.batch_size,
                                       max(1, int(args.window * model.sample_rate)), skipped)
            rows = stream(model, sys.stdin.buffer, args.window, args.hop, statistics)
        elif len(models) > 1:
            rows = predict_fused(models, expand(args.inputs), args.batch_size, args.window, speaker_files, skipped)
        else:
            rows = predict(model, expand(args.inputs), args.batch_size, window_seconds=args.window,
                           speaker_files=speaker_files, skipped=skipped)
        for row in rows:
            print(json.dumps(row), flush=True)
    except UserError as err:
        print(f"ser-predict: error: {err}", file=sys.stderr)
        return 2
    if skipped:
        print(f"ser-predict: {len(skipped)} input file(s) could not be read and were skipped (named above); "
              f"every other file was answered (exit status {EXIT_SKIPPED})", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
