"""ser-predict: emotion probabilities for audio files from a trained checkpoint.

    ser-predict --ckpt logs/train/runs/<run>/checkpoints/last.ckpt clip.wav more/ ...

Prints one JSON object per file, in the order given (folders sorted):
{"path": ..., "emotion": ..., "probs": {emotion: p}, "windows": [{"start": s, "end": s,
"emotion": ..., "probs": {...}}, ...]}; a model of emotion attributes (task=attributes|both)
prints "attributes": {arousal, valence, dominance} on [0, 1] and, where the training corpus's
rating scale is known, "attributes_on_scale" on it. A file is scored in windows of ``--window`` seconds
(10 by default, the length models are trained on), so a recording of any length costs the
memory of a few windows; the whole-file result is the windows' probabilities averaged by
their duration. Any sample rate and channel count is read (mixed to mono, resampled to the
model's rate); unreadable files are reported on stderr and skipped.

A model that normalises per speaker (``features.normalize=speaker``, the default of the log-mel,
MFCC and eGeMAPS front ends) is given its inputs as training and the test step gave them: the
files of one call are taken as one speaker's clips, and every window is standardised by the
statistics of all of them, with the front end's own normaliser. ``--speaker-stats FILES_OR_DIR``
takes the speaker's statistics from other clips of theirs (enrolment) instead. One file of an
unknown speaker is standardised by the pooled statistics of the training speakers, which the
checkpoint keeps, with a warning: it is scored, but less well than with its speaker's own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ser.data.audio import DECODE_THREADS, try_load_mono
from ser.data.corpora import AUDIO_SUFFIXES
from ser.data.loading import pad_batch
from ser.errors import UserError
from ser.frontends.normalize import SpeakerStatistics
from ser.module import SERModule


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


def predict(module: SERModule, files: list[Path], batch_size: int = 16, chunk_batches: int = 16,
            window_seconds: float = WINDOW_SECONDS, speaker_files: list[Path] | None = None) -> Iterator[dict]:
    """Probabilities for ``files``, yielded in their order, for each window and the whole file.

    Files are read ``batch_size * chunk_batches`` at a time on a thread pool, the next chunk
    while the model scores this one, so memory stays at two chunks whatever the folder's size.
    Within a chunk, windows of similar length are batched together: little padding, and the
    models are padding-invariant anyway.

    A model normalising per speaker first computes every window's frozen-stage output (log-mel,
    functionals) and standardises it by the speaker's statistics (those of ``speaker_files``
    if given, else of all ``files`` as one speaker's, else for a lone file the checkpoint's pooled
    training statistics); the call then holds those features, not the audio.
    """
    device = next(module.parameters()).device
    module.eval()
    rate, size = module.sample_rate, max(1, int(window_seconds * module.sample_rate))
    chunks = _windowed_chunks(files, rate, size, batch_size * chunk_batches, module.frontend.min_samples)
    if module.frontend.speaker_normalizer() is not None:
        chunks = [_by_speaker(module, list(chunks), batch_size, speaker_files, size)]
    for chunk in chunks:
        readouts = iter(_readouts(module, [piece for _, _, pieces in chunk for piece in pieces], batch_size, device))
        for path, spans_of, _ in chunk:
            scored = [(a, b, next(readouts)) for a, b in spans_of]
            whole = sum((b - a) * p for a, b, p in scored) / sum(b - a for a, b, _ in scored)
            yield {"path": str(path), **module.task.describe(whole),
                   "windows": [{"start": round(a / rate, 3), "end": round(b / rate, 3), **module.task.describe(p)}
                               for a, b, p in scored]}


def _windowed_chunks(files: list[Path], rate: int, size: int, chunk: int, shortest: int) -> Iterator[list]:
    """Chunks of (path, window spans, window samples) of the readable files."""
    for decoded in _decoded_chunks(files, rate, chunk):
        readable = [(path, samples) for path, samples in decoded if samples is not None]
        spans = [windows(len(samples), size, shortest) for _, samples in readable]
        yield [(path, spans_of, [samples[a:b] for a, b in spans_of]) for (path, samples), spans_of in zip(readable, spans)]


def _by_speaker(module: SERModule, chunks: list[list], batch_size: int, speaker_files: list[Path] | None,
                size: int) -> list:
    """The windows of ``chunks`` as their frozen-stage output ``[width, frames]``, standardised
    by one speaker's statistics with the front end's normaliser, as the data side standardises
    each speaker's cached clips."""
    frontend, normalizer = module.frontend, module.frontend.speaker_normalizer()
    entries = [entry for chunk in chunks for entry in chunk]
    features = iter(_stage_outputs(frontend, [piece for _, _, pieces in entries for piece in pieces], batch_size))
    entries = [(path, spans_of, [next(features) for _ in pieces]) for path, spans_of, pieces in entries]
    statistics = _speaker_statistics(module, entries, batch_size, speaker_files, size)
    return [(path, spans_of, [normalizer.apply(rows.T, statistics).T for rows in of_file])
            for path, spans_of, of_file in entries]


def _speaker_statistics(module: SERModule, entries: list, batch_size: int, speaker_files: list[Path] | None,
                        size: int) -> SpeakerStatistics:
    """Whose statistics standardise the call's windows, said on stderr."""
    if speaker_files:
        enrolment = [piece for chunk in _windowed_chunks(speaker_files, module.sample_rate, size, 256,
                                                         module.frontend.min_samples)
                     for _, _, pieces in chunk for piece in pieces]
        if not enrolment:
            raise UserError("--speaker-stats: none of its files could be read")
        rows = _stage_outputs(module.frontend, enrolment, batch_size)
        print(f"ser-predict: the speaker's statistics come from the {len(rows)} windows of --speaker-stats",
              file=sys.stderr)
        return SpeakerStatistics.of(r.T.numpy() for r in rows)
    if len(entries) >= 2:
        windows_in_all = sum(len(of_file) for _, _, of_file in entries)
        print(f"ser-predict: the {windows_in_all} windows of these {len(entries)} files are taken as one speaker's "
              "clips (the model normalises per speaker); score each speaker's files in a call of their own",
              file=sys.stderr)
        return SpeakerStatistics.of(rows.T.numpy() for _, _, of_file in entries for rows in of_file)
    if not module.frontend.pooled.known:
        raise UserError("this model normalises per speaker and its checkpoint holds no pooled training statistics "
                        "(written before ser kept them): give ser-predict several files of the speaker at once, "
                        "or --speaker-stats with other clips of theirs")
    print("ser-predict: warning: one file of an unknown speaker is standardised by the training speakers' pooled "
          "statistics, not its own, which usually costs accuracy; give several files of the speaker at once "
          "or --speaker-stats FILES", file=sys.stderr)
    return module.frontend.pooled.statistics()


@torch.no_grad()
def _stage_outputs(frontend, pieces: list[np.ndarray], batch_size: int) -> list[torch.Tensor]:
    """The frozen stage's output ``[width, frames]`` of each window, unnormalised, on the CPU."""
    stage = frontend.frozen_stage()
    outputs = []
    for start in range(0, len(pieces), batch_size):
        waves, lengths, _ = pad_batch([(torch.from_numpy(p), 0) for p in pieces[start : start + batch_size]])
        device = stage.device
        computed, frames = stage.compute(waves.to(device), lengths.to(device))
        outputs += [clip[:, :n].float().cpu() for clip, n in zip(computed, frames.tolist())]
    return outputs


def windows(length: int, size: int, shortest: int) -> list[tuple[int, int]]:
    """[start, end) sample spans of consecutive windows of ``size`` covering a clip; a last piece
    shorter than ``shortest`` (too short to analyse) joins the window before it."""
    spans = [(start, min(start + size, length)) for start in range(0, length, size)] or [(0, length)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < shortest:
        spans[-2:] = [(spans[-2][0], length)]
    return spans


def _readouts(module, clips: list, batch_size: int, device) -> list[torch.Tensor]:
    """What the task reports of each clip (probabilities, attribute values; averaged over a
    file's windows): clips are waveforms [samples] or features [width, frames]."""
    by_length = sorted(range(len(clips)), key=lambda i: clips[i].shape[-1])
    probs = [None] * len(clips)
    for start in range(0, len(by_length), batch_size):
        rows = by_length[start : start + batch_size]
        waves, lengths, _ = pad_batch([(torch.as_tensor(clips[i]), 0) for i in rows])
        with torch.no_grad():
            out = module.task.readout(module(waves.to(device), lengths.to(device))).cpu()
        for i, p in zip(rows, out):
            probs[i] = p
    return probs


def _decoded_chunks(files: list[Path], sample_rate: int, size: int) -> Iterator[list]:
    """Chunks of (path, samples or None), each decoded while the previous one is scored."""
    def read(path):
        samples, error = try_load_mono(path, sample_rate)
        if error is not None:
            print(f"skipped {path}: {error}", file=sys.stderr)
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ser-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS,
                        help="seconds per scored window (default %(default)s)")
    parser.add_argument("--speaker-stats", nargs="+", action="extend", metavar="FILES_OR_DIR",
                        help="a model normalising per speaker: take the speaker's statistics from these "
                             "clips of theirs (default: from all the files scored in this call)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        module = SERModule.from_checkpoint(args.ckpt).to(args.device)
        speaker_files = expand(args.speaker_stats) if args.speaker_stats else None
        for row in predict(module, expand(args.inputs), args.batch_size, window_seconds=args.window,
                           speaker_files=speaker_files):
            print(json.dumps(row), flush=True)
    except UserError as err:
        print(f"ser-predict: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
