"""Training and inference throughput (clips/s) and peak memory of every `model=` choice.

    python benchmarks/models.py                   # all models, CPU (or the GPU if present)
    python benchmarks/models.py --models cnn_gru lstm --batch-size 16
    python benchmarks/models.py --readme          # also refresh its table in benchmarks/README.md

Each model runs in its own process so that peak memory is its own. Clips are 2.5 s of
synthetic speech (a CREMA-D-length utterance) at 16 kHz; one training step is forward,
backward and an Adam update through the real LightningModule (front end included).
Ratios are against the default model, cnn_gru, measured in the same run. The encoder presets
are timed on a randomly initialised base-size encoder of their family (no weights can be
downloaded here): same compute as the base checkpoints.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys

import numpy as np
import torch

from common import REPO, base_encoder, compose, encoder_family, machine, timed

BASELINE = "cnn_gru"


def all_models() -> list[str]:
    """Every architecture, and the base-size preset of each encoder family."""
    names = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml") if not p.stem.startswith("default"))
    return [n for n in names if encoder_family(n) is None] + ["wav2vec2", "hubert", "wavlm", "data2vec", "whisper_base"]


def measure(name: str, batch_size: int, steps: int, precision: str) -> dict:
    from hydra.utils import instantiate

    from ser.data.synthetic import PROSODY, make_voice, synthesize

    family = encoder_family(name)
    # Timed as the module runs per step: the encoder fine-tuned (a frozen one is cached, see encoders.py).
    overrides = [f"model={name}"] + ([f"features.name={base_encoder(family)}", "features.freeze=conv"]
                                     if family else [])
    module = instantiate(compose(overrides).model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rng = np.random.default_rng(0)
    clips = [synthesize(make_voice(i % 8, 0), list(PROSODY)[i % 6], rng, 16000) for i in range(batch_size)]
    waves = torch.zeros(batch_size, 40000)
    for i, c in enumerate(clips):
        waves[i, : min(len(c), 40000)] = torch.from_numpy(c[:40000])
    lengths = torch.full((batch_size,), 40000)
    waves, lengths = waves.to(device), lengths.to(device)
    labels = torch.arange(batch_size, device=device) % len(module.classes)
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step():
        module.train()
        with autocast:  # as training_step: augmented where the model has augmentation
            logits = module._train_logits(waves, lengths) if module.augment is not None else module(waves, lengths)
            loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer():
        module.eval()
        with autocast:
            module(waves, lengths)

    train_s, infer_s = timed(train_step, steps), timed(infer, steps)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"model": name, "params": sum(p.numel() for p in module.parameters()),
            "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
            "train_clips_s": batch_size / train_s, "infer_clips_s": batch_size / infer_s,
            "peak_mib": peak, "device": device}


def measure_in_child(name: str, args) -> dict | None:
    """On the CPU each model runs in its own process: peak RSS cannot be reset."""
    out = subprocess.run([sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size),
                          "--steps", str(args.steps), "--precision", args.precision],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_here(name: str, args) -> dict | None:
    """On a GPU the peak is reset per model, so all run in this process (no start-up each)."""
    try:
        return measure(name, args.batch_size, args.steps, args.precision)
    except Exception as err:  # noqa: BLE001 - report and go on to the next model
        print(f"{name}: failed ({err.__class__.__name__}: {err})", file=sys.stderr)
        return None
    finally:
        torch.cuda.empty_cache()


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["model"] == BASELINE), rows[0])
    lines = ["| model | parameters (trainable) | train clips/s | ×cnn_gru | inference clips/s | ×cnn_gru | peak memory MiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        trainable = "" if r["trainable"] == r["params"] else f" ({r['trainable'] / 1e6:.2f} M)"
        lines.append(f"| `{r['model']}` | {r['params'] / 1e6:.2f} M{trainable} | {r['train_clips_s']:.1f} | "
                     f"{r['train_clips_s'] / base['train_clips_s']:.2f} | {r['infer_clips_s']:.1f} | "
                     f"{r['infer_clips_s'] / base['infer_clips_s']:.2f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    """Replace the models table of benchmarks/README.md (its one home) with ``text``."""
    readme = REPO / "benchmarks" / "README.md"
    start, end = "<!-- models-table:start -->", "<!-- models-table:end -->"
    content = readme.read_text()
    if start not in content:
        raise SystemExit(f"benchmarks/README.md has no {start} marker")
    content = re.sub(f"{start}.*?{end}", f"{start}\n{text}\n{end}", content, flags=re.S)
    readme.write_text(content)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the fastest counts")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--readme", action="store_true", help="write the table into benchmarks/README.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch_size, args.steps, args.precision)))
        return
    names = args.models or all_models()
    if BASELINE not in names:
        names = [BASELINE, *names]
    rows = []
    for name in names:
        row = measure_here(name, args) if torch.cuda.is_available() else measure_in_child(name, args)
        if row:
            rows.append(row)
            print(f"{name}: {row['train_clips_s']:.1f} train clips/s", file=sys.stderr)
    if not rows:
        raise SystemExit("no model could be measured (errors above)")
    text = (f"{table(rows)}\n\nMachine: {machine()}. Batch {args.batch_size} clips of 2.5 s, "
            f"precision {args.precision}. Command: `python benchmarks/models.py"
            f"{' --precision ' + args.precision if args.precision != '32' else ''}`.")
    print(text)
    if args.readme:
        update_readme(text)


if __name__ == "__main__":
    main()
