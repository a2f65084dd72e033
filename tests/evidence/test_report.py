"""From runs to tables: the cross-corpus grid of a multirun and ser-report's report.md/report.html."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SMALL
from corpora_fixtures import crema_d, emodb

QUICK = [*SMALL, "logger=csv", "debug=limit", "trainer.limit_test_batches=1.0"]


def multirun(args: list[str], sweep: Path) -> None:
    proc = subprocess.run([sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={sweep}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_the_cross_corpus_grid_of_a_multirun_fills_every_cell(cache_dir, tmp_path):
    data = tmp_path / "data"  # the corpora under their published folder names, as a user keeps them
    crema_d(data / "CREMA-D")
    emodb(data / "EmoDB")
    sweep = tmp_path / "sweep"
    # Two test speakers per corpus: one alone has no interval (nothing to resample).
    multirun(["data=cremad,emodb", "test_on=[cremad,emodb]", f"paths.data_dir={data}", "debug=limit",
              "logger=csv", "trainer.limit_test_batches=1.0", "data.test_fraction=0.4"], sweep)

    grid = json.loads((sweep / "cross_corpus.json").read_text())["egemaps_mlp"]  # the default model
    assert grid["train"] == ["cremad", "emodb"] and grid["test"] == ["cremad", "emodb"]
    cells = {(train, test): c for train, row in zip(grid["train"], grid["cells"]) for test, c in zip(grid["test"], row)}
    assert all(c is not None and 0 <= c["ci95"][0] <= c["uar"] + 1e-6 <= c["ci95"][1] + 2e-6 for c in cells.values())
    # CREMA-D has no boredom: EmoDB's model is scored on CREMA-D over the six emotions both have
    assert "boredom" not in cells["emodb", "cremad"]["classes"] and len(cells["emodb", "cremad"]["classes"]) == 6
    assert "boredom" in cells["emodb", "emodb"]["classes"]
    for job in ("0", "1"):  # the diagonal is each job's own test split
        results = json.loads((sweep / job / "results.json").read_text())
        assert cells[results["data"], results["data"]]["uar"] == results["test/uar"]
        other = "emodb" if results["data"] == "cremad" else "cremad"
        assert (sweep / job / f"confusion_matrix_{other}.png").is_file()
        assert set(results["cross_corpus"][other]["per_speaker_uar"])  # scored by speaker too
    assert (sweep / "cross_corpus_egemaps_mlp.png").stat().st_size > 5_000
    table = (sweep / "cross_corpus.md").read_text()
    assert re.search(r"\| emodb \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \| \d\.\d{3} \[", table), table


PROBE = """<!DOCTYPE html><html><body><pre id="out">waiting</pre>
<iframe id="report" src="REPORT" width="1200" height="900"></iframe>
<script>
document.getElementById("report").onload = function () {
  const doc = this.contentDocument;
  const images = [...doc.images];
  document.getElementById("out").textContent = JSON.stringify({
    title: doc.title,
    runs: doc.querySelectorAll("#runs tbody tr").length,
    paired: doc.querySelectorAll("#paired tbody tr").length,
    images: images.length,
    loaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    external: [...doc.querySelectorAll("[src]")].filter(e => !e.src.startsWith("data:")).length,
  });
};
</script></body></html>"""


def rendered(report: Path, scratch: Path) -> dict:
    """What a real headless Chromium shows of ``report`` (read through a same-folder probe page)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "the report test needs Chromium (Debian: apt-get install chromium; .ci/run installs it)"
    probe = report.parent / "probe.html"
    probe.write_text(PROBE.replace("REPORT", report.name))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           f"--user-data-dir={scratch}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert found and found.group(1) != "waiting", (proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(found.group(1).replace("&quot;", '"'))


def test_the_report_of_two_models_by_two_seeds_renders_in_a_browser(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    multirun(["model=cnn,lstm", "seed=1,2", *QUICK], sweep)
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert sorted((r["model"], r["model_class"], r["seed"]) for r in runs) == [
        ("cnn", "ser.models.cnn.BaseCNN", 1), ("cnn", "ser.models.cnn.BaseCNN", 2),
        ("lstm", "ser.models.lstm.LSTMClassifier", 1), ("lstm", "ser.models.lstm.LSTMClassifier", 2)]
    (sweep / "0" / "confusion_matrix.png").unlink()  # drawn again from results.json's counts

    command = Path(sys.executable).parent / "ser-report"  # the console script the install made
    proc = subprocess.run([str(command), str(sweep)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    md = (sweep / "report.md").read_text()
    runs_table = re.findall(r"^\| (\d) \| (cnn|lstm) \| synthetic \| speaker", md, re.M)
    assert sorted(runs_table) == [("0", "cnn"), ("1", "cnn"), ("2", "lstm"), ("3", "lstm")], md  # a row per run
    assert re.search(r"\| cnn \| synthetic \| speaker \| 2 \| 1, 2 \| \d\.\d{3} ± \d\.\d{3} \|", md), md
    # a paired test for each seed: both models met the same test clips, and only there
    assert len(re.findall(r"\| cnn / synthetic / seed (\d) .*?\| lstm / synthetic / seed \1 ", md)) == 2, md
    assert "seed 1 (0) | lstm / synthetic / seed 2" not in md
    assert (sweep / "report_uar.png").stat().st_size > 5_000
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert len(linked) == 5 and all((sweep / link).is_file() for link in linked), linked  # report.md's figures exist

    page = rendered(sweep / "report.html", tmp_path / "chromium")
    assert page["title"] == "ser report: sweep"
    assert page["runs"] == 4 and page["paired"] == 2
    assert page["images"] == 5 and page["loaded"] == 5  # the bar chart and four confusion matrices
    assert page["external"] == 0  # self-contained: every image inline
