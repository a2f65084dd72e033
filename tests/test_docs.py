"""Documentation that cannot rot: every command the README and docs/ show in a code block.

``python train.py ...`` composes (a multirun is expanded by Hydra's own sweeper into its jobs,
each composed as ``--cfg job`` would), and the cheap ones (the built-in corpus, no pretrained
weights, no cluster, no GPU) run under ``debug=fdr``; every flag of a ``ser-*`` command and
of ``sweep.py`` is one the command takes; every ``python -m`` module and ``benchmarks/`` script
shown exists. Placeholders (``<run>``, ``...``) stand for a path or value the reader fills in.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import REPO, SMALL, compose_train, train_here

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
HYDRA_FLAGS = {"-m", "--multirun", "--help", "--resolve", "--info", "-h"}
SCRIPTS = {"ser-predict": "ser.serving.predict", "ser-export": "ser.serving.export",
           "ser-report": "ser.evidence.report", "ser-aggregate": "ser.evidence.aggregate",
           "ser-fuse": "ser.evidence.fuse"}


def code_lines(page: Path) -> list[str]:
    """The lines of a page's fenced code blocks, continuation lines joined."""
    lines, inside = [], False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            if lines and lines[-1].endswith("\\"):
                lines[-1] = lines[-1][:-1] + " " + line.strip()
            else:
                lines.append(line.strip())
    return lines


def commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every command shown, split at ``&&``, ``|`` and ``;`` as a shell would."""
    found = []
    for page in PAGES:
        for line in code_lines(page):
            line = re.sub(r"<([^<>\s]+)>", lambda m: re.sub(r"\W+", "_", m.group(1)), line)  # <run> -> run
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            try:
                tokens = list(lexer)
            except ValueError:  # not a shell line (output shown in a block)
                continue
            argv = []
            for token in [*tokens, ";"]:
                if token in ("&&", "||", "|", ";", "&", "<", ">"):
                    if argv:
                        found.append((page.name, argv))
                    argv = []
                else:
                    argv.append(filled(token))
    return [(page, argv) for page, argv in found if argv[0] != "..."]


def filled(token: str) -> str:
    """A placeholder as a reader fills it in: ``data.root=...`` -> a path."""
    return re.sub(r"=\.\.\.$", "=/data/corpus", token)


def train_commands() -> list[tuple[str, list[str]]]:
    return [(page, argv[2:]) for page, argv in commands() if argv[:2] == ["python", "train.py"]]


def jobs(args: list[str]) -> list[list[str]]:
    """The override lists of the jobs a train.py command starts (one unless it is a multirun)."""
    args = [a for a in args if a not in HYDRA_FLAGS]
    if "--cfg" in args:
        at = args.index("--cfg")
        args = args[:at] + args[at + 2:]
    overrides = [a for a in args if a != "..."]
    parsed = OverridesParser.create().parse_overrides(overrides)
    if not any(o.is_sweep_override() for o in parsed):
        return [overrides]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def test_the_pages_show_commands_of_every_kind():
    shown = commands()
    assert len(train_commands()) >= 40
    assert {argv[0] for _, argv in shown} >= {"python", "pip", *SCRIPTS}


def test_every_train_command_shown_composes(cache_dir):
    failed = []
    for page, args in train_commands():
        for overrides in jobs(args):
            try:
                compose_train(overrides)
            except Exception as err:  # noqa: BLE001 - reported with the page and the command
                failed.append(f"{page}: python train.py {' '.join(args)}\n    {type(err).__name__}: {err}")
    assert not failed, "\n".join(failed)


EXPENSIVE = re.compile(r"^(data=(?!synthetic$)|data\.root=|model=(hf|wav2vec|xlsr|hubert|wavlm|data2vec|whisper|emotion2vec|mamba|cnn_mamba)"
                       r"|features\.name=|ckpt_path=|test_on=|hydra/launcher=|hparams_search=|trainer=(gpu|ddp)|trainer\.precision="
                       r"|trainer\.accelerator=|model\.compile=true|train=false|\+?experiment=|debug=|hydra\."
                       r"|augment\.channel\.\w+\.folder=)")  # the user's recordings, like data.root


def cheap(args: list[str]) -> bool:
    """A command that runs here in seconds: the built-in corpus, no weights, cluster or GPU."""
    return len(jobs(args)) == 1 and not any(EXPENSIVE.match(a) for a in jobs(args)[0])


CHEAP = sorted({" ".join(jobs(args)[0]) for _, args in train_commands() if cheap(args)})  # "": python train.py


@pytest.mark.parametrize("args", CHEAP)
def test_each_cheap_train_command_shown_runs_under_debug_fdr(cache_dir, tmp_path, args):
    results = train_here([*args.split(), *SMALL, "debug=fdr", "logger=csv"], tmp_path)
    assert isinstance(results, dict), f"python train.py {args} stopped: {results}"
    assert "test/uar" in results or "test/ccc" in results


def test_some_commands_are_cheap_enough_to_run():
    assert len(CHEAP) >= 6 and "" in CHEAP, CHEAP


def options_of(module: str) -> str:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_every_flag_of_every_ser_command_and_sweep_py_shown_is_one_it_takes():
    helps = {name: options_of(module) for name, module in SCRIPTS.items()}
    sweep = subprocess.run([sys.executable, "sweep.py", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    helps["sweep.py"] = sweep.stdout
    wrong, seen = [], set()
    for page, argv in commands():
        name = argv[1] if argv[:2] == ["python", "sweep.py"] else argv[0]
        if name not in helps:
            continue
        seen.add(name)
        for flag in (a.split("=")[0] for a in argv[1:] if a.startswith("-") and a != "-"):
            if not re.search(rf"(^|[\s,\[]){re.escape(flag)}\b", helps[name]):
                wrong.append(f"{page}: {' '.join(argv)}: {flag}")
    assert not wrong, wrong
    assert seen == set(helps)


def test_every_module_and_script_shown_exists():
    missing = []
    for page, argv in commands():
        if argv[:2] == ["python", "-m"] and not importlib.util.find_spec(argv[2]):
            missing.append(f"{page}: python -m {argv[2]}")
        for path in (a for a in argv if a.startswith("benchmarks/") and a.endswith(".py")):
            if not (REPO / path).is_file():
                missing.append(f"{page}: {path}")
    assert not missing, missing


def test_the_readme_is_read_in_five_minutes_and_links_every_page_of_the_site():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in sorted((REPO / "docs").glob("*.md")):
        assert page.name == "index.md" or f"(docs/{page.name})" in readme, page.name
