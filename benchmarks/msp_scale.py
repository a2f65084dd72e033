"""MSP-Podcast's size: what the caches and an epoch cost as the corpus grows.

Writes MSP-Podcast's layout (``Audios/*.wav``, ``Labels/labels_consensus.csv`` with the
release's columns and partitions) at each size, of 16-bit 16 kHz clips of the built-in
corpus's synthetic speech (3 s, as many speakers as the release has per segment), then in a
fresh process per step, as a user's run would:

  1. builds the caches a log-mel model reads (waveforms, log-mel, log-mel per speaker):
     clips/s of each, disk per hour of audio, the process's peak RSS;
  2. trains one epoch of ``model=cnn_gru`` on the Train partition (validating on Development)
     with train.py on those caches: its wall time (start and validation included) and peak RSS.

    python benchmarks/msp_scale.py [--sizes 2000 20000] [--seconds 3]

Peak RSS is the kernel's high-water mark of the process (``ru_maxrss``), which is what SLURM's
memory accounting kills a job over.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import REPO, machine

CODES = "ASHUFDCN"  # the 8 classes of the Odyssey 2024 challenge
PARTITIONS = ["Train"] * 7 + ["Development", "Test1", "Test1"]
PER_SPEAKER = 20  # segments per podcast speaker


def write_corpus(root: Path, segments: int, seconds: float) -> float:
    """MSP-Podcast's layout with ``segments`` clips; returns the hours of audio."""
    from ser.data.audio import write_wav
    from ser.data.synthetic import PROSODY, make_voice, synthesize

    # The built-in corpus speaks CREMA-D's six emotions; contempt and surprise borrow two.
    prosody = {"A": "ANG", "S": "SAD", "H": "HAP", "U": "FEA", "F": "FEA", "D": "DIS", "C": "DIS", "N": "NEU"}
    assert set(prosody.values()) <= set(PROSODY)
    length = int(seconds * 16000)
    # 400 distinct utterances (50 voices x 8 emotions), written under every name: synthesis is
    # not what is measured.
    voices = {v: make_voice(v, 0) for v in range(50)}
    pool = {}
    for v, code in ((v, c) for v in voices for c in CODES):
        clip = synthesize(voices[v], prosody[code], np.random.default_rng([v, ord(code)]), 16000)
        pool[v, code] = np.resize(clip, length)  # repeated to the length
    rows = []
    (root / "Audios").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> dict:
        speaker, code = i // PER_SPEAKER, CODES[i % len(CODES)]
        name = f"MSP-PODCAST_{speaker + 1:04d}_{i % PER_SPEAKER + 1:04d}.wav"
        write_wav(root / "Audios" / name, pool[speaker % 50, code], 16000)
        return {"FileName": name, "EmoClass": code, "EmoAct": "4.0", "EmoVal": "4.0", "EmoDom": "4.0",
                "SpkrID": str(speaker), "Gender": "Female" if speaker % 2 else "Male",
                "Split_Set": PARTITIONS[speaker % len(PARTITIONS)]}
    with ThreadPoolExecutor(os.cpu_count()) as threads:
        rows = list(threads.map(one, range(segments)))
    (root / "Labels").mkdir(exist_ok=True)
    with open(root / "Labels" / "labels_consensus.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return segments * seconds / 3600


def overrides(root: Path, cache: Path) -> list[str]:
    return ["data=msp_podcast", f"data.root={root}", f"data.cache_dir={cache}", "model=cnn_gru",
            "data.num_workers=0", "logger=csv", "callbacks.progress_bar=null", "++trainer.enable_progress_bar=false",
            "seed=0"]


def build_caches(root: Path, cache: Path) -> dict:
    """Step 1, in this (fresh) process: every cache a log-mel model reads, timed one by one."""
    import logging

    from hydra.utils import instantiate

    from ser.data.cache import FeatureCache, SpeakerNormalised, WaveformCache

    from common import compose

    logging.disable(logging.INFO)
    cfg = compose(overrides(root, cache))
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend, task=module.task)
    clips = datamodule._scan()
    times = {}
    started = time.perf_counter()
    waveforms = WaveformCache.open([c.path for c in clips], 16000, cache)
    times["waveforms"] = time.perf_counter() - started
    started = time.perf_counter()
    features = FeatureCache.open(waveforms, datamodule.frozen_stage, cache)
    times["log-mel"] = time.perf_counter() - started
    speaker_of = {c.path: c.speaker for c in clips}
    started = time.perf_counter()
    SpeakerNormalised.open(features, speaker_of, datamodule.normalizer, cache)
    times["per speaker"] = time.perf_counter() - started
    sizes = {name: sum(f.stat().st_size for f in (cache / folder).glob("*.rows"))
             for name, folder in (("waveforms", "waveforms"), ("log-mel", "features"), ("per speaker", "by_speaker"))}
    return {"clips": len(clips), "seconds": times, "bytes": sizes, "peak_rss": peak_rss()}


def peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def one_epoch(root: Path, cache: Path, out: Path) -> dict:
    """Step 2: train.py for one epoch, in a process of its own; its time and peak RSS."""
    script = ("import atexit, resource, runpy, sys, json;"
              "atexit.register(lambda: print('PEAK_RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,"
              " file=sys.stderr));"
              "sys.argv = sys.argv[1:]; runpy.run_path('train.py', run_name='__main__')")
    command = [sys.executable, "-c", script, "train.py", *overrides(root, cache), "trainer.max_epochs=1",
               "test=false", f"hydra.run.dir={out}"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    peak = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS")))
    return {"seconds": time.perf_counter() - started, "peak_rss": peak}


def in_fresh_process(function: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--step", function, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "caches":
        print(json.dumps(build_caches(Path(args.paths[0]), Path(args.paths[1]))))
        return
    print(machine())
    print(f"MSP-Podcast layout, {args.seconds:g} s 16-bit 16 kHz segments, model=cnn_gru")
    print("| segments | hours | waveform cache clips/s | log-mel clips/s | per-speaker clips/s | MiB per hour: "
          "waveforms / log-mel / per speaker | peak RSS building | train.py, 1 epoch: s (train clips/s) | its peak RSS |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            hours = write_corpus(work / "msp", size, args.seconds)
            built = in_fresh_process("caches", str(work / "msp"), str(work / "cache"))
            epoch = one_epoch(work / "msp", work / "cache", work / "run")
            rates = " | ".join(f"{built['clips'] / built['seconds'][k]:.0f}" for k in ("waveforms", "log-mel", "per speaker"))
            per_hour = " / ".join(f"{built['bytes'][k] / hours / 2**20:.0f}" for k in ("waveforms", "log-mel", "per speaker"))
            train_clips = built["clips"] * PARTITIONS.count("Train") / len(PARTITIONS)
            seconds = epoch["seconds"]
            print(f"| {size} | {hours:.2f} | {rates} | {per_hour} | {built['peak_rss'] / 2**20:.0f} MiB | "
                  f"{seconds:.0f} ({train_clips / seconds:.0f}) | {epoch['peak_rss'] / 2**20:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
