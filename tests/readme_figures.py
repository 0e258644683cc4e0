"""README's quoted results, checked against a real run: `make readme-check` runs
`ablab run bn_trainable` as a fresh clone would (a new store, 80 columns) and compares what it
prints, and what `ablab report --json` says, with the blocks README quotes between
`<!-- figures:NAME -->` markers; `make readme-figures` writes them (and the walkthrough's plots)
from such a run. So the next change to the numbers cannot leave README behind.

The figures hold bit for bit on one machine only (an AVX-512 CPU and an AVX2 one give
different accuracies from the same seeds): README names the fingerprint they came from
(`figures:machine`), and on a machine with another fingerprint the check compares what must
agree anywhere (the verdict, and intervals that overlap) and prints both.

    python -m tests.readme_figures check|write
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
STUDY = "bn_trainable"
PLOTS = ("per_seed.png", "score_distribution.png")


def fingerprint(tmp: Path) -> tuple[str, str]:
    """The fresh run's fingerprint digest and its parts in words, from a trial run's tags."""
    from mlflow import MlflowClient

    from core import names

    c = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(STUDY)
    run = c.search_runs([exp.experiment_id], "tags.`ablab.role` = 'trial'", max_results=1)[0]
    t = run.data.tags
    words = (f"{t.get(names.FP_CPU)}, {t.get(names.FP_ISA)}, oneDNN "
             f"{t.get(names.FP_ONEDNN)}, GPU {t.get(names.FP_GPU)}, "
             f"{t.get(names.FP_VERSIONS)}")
    return t.get(names.FINGERPRINT, "unknown"), words


def machine_block(digest: str, words: str) -> str:
    return f"Figures from a machine with fingerprint `{digest}` ({words})."


def run_study(tmp: Path) -> tuple[str, dict, float]:
    """`ablab run` and `ablab report --json` in a fresh store; (printed, report, seconds)."""
    env = {**os.environ, "COLUMNS": "80", "ABLAB_MLRUNS": str(tmp / "mlruns"),
           "ABLAB_REPORTS": str(tmp / "reports")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ABLAB_STORAGE", None)
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "core.cli", "run", STUDY], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    took = time.monotonic() - t0
    if run.returncode != 0:
        sys.exit(f"ablab run {STUDY} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    rep = subprocess.run([sys.executable, "-m", "core.cli", "report", STUDY, "--json",
                          "--out", str(tmp / "again")], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return run.stdout, json.loads(rep.stdout), took


def printed_comparison(stdout: str) -> str:
    """The comparison `ablab run` printed: from its title to the line naming the report."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if " vs baseline " in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("report: "))
    return "\n".join(line.rstrip() for line in lines[start:end]).strip()


def intro(report: dict) -> str:
    """README's opening claim, from the report's numbers."""
    (c,) = report["comparisons"]
    verb = {"better": "beats", "worse": "loses to"}.get(c["verdict"].split()[0])
    n = min(c["n_base"], c["n_variant"])
    if verb is None:
        return (f'"{c["variant"]} vs {c["baseline"]}: {c["verdict"]}" ({n} seeds each)')
    return (f'"trainable BatchNorm {verb} frozen by {100 * c["diff"]:+.1f} points '
            f'(Holm-adjusted 95% CI {100 * c["diff_ci_low"]:.1f} to '
            f'{100 * c["diff_ci_high"]:.1f}, {c["test"]}, p = {c["p_holm"]:.3f}, {n} seeds '
            'each)"')


def blocks(stdout: str, report: dict) -> dict[str, str]:
    return {"intro": intro(report),
            "comparison": "```\n" + printed_comparison(stdout) + "\n```"}


def marked(text: str, name: str) -> re.Match:
    m = re.search(rf"<!-- figures:{name} -->\n(.*?)\n<!-- /figures:{name} -->", text, re.S)
    if m is None:
        sys.exit(f"README.md has no <!-- figures:{name} --> block")
    return m


def quoted(text: str) -> tuple[str, float, float]:
    """README's intro claim: (verdict word, CI low, CI high) in points."""
    claim = marked(text, "intro").group(1)
    m = re.search(r"CI (-?[\d.]+) to (-?[\d.]+)", claim)
    verdict = "better" if " beats " in claim else "worse" if " loses to " in claim else (
        claim.split(": ")[-1].split('"')[0])
    return verdict, float(m.group(1)) if m else math.nan, float(m.group(2)) if m else math.nan


def elsewhere(text: str, report: dict, digest: str, words: str) -> int:
    """Another machine: the verdict must match and the intervals overlap."""
    (c,) = report["comparisons"]
    verdict, lo, hi = quoted(text)
    fresh = (c["verdict"].split()[0], 100 * c["diff_ci_low"], 100 * c["diff_ci_high"])
    same = fresh[0] == verdict and fresh[1] <= hi and lo <= fresh[2]
    print(f"{marked(text, 'machine').group(1)}\nThis machine: `{digest}` ({words}).\n"
          f"README: {verdict}, CI {lo:.1f} to {hi:.1f} points; this run: {fresh[0]}, CI "
          f"{fresh[1]:.1f} to {fresh[2]:.1f} points.")
    print(f"{'ok' if same else 'MISMATCH'}: another fingerprint, so exact figures differ; "
          "the verdict " + ("matches and the intervals overlap" if same else
                            "or the intervals disagree"))
    return 0 if same else 1


def main(mode: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ablab-readme-"))
    stdout, report, took = run_study(tmp)
    digest, words = fingerprint(tmp)
    want = {**blocks(stdout, report), "machine": machine_block(digest, words)}
    text = README.read_text()
    if mode == "check" and f"`{digest}`" not in marked(text, "machine").group(1):
        return elsewhere(text, report, digest, words)
    if mode == "write":
        for name, block in want.items():
            m = marked(text, name)
            text = text[:m.start(1)] + block + text[m.end(1):]
        README.write_text(text)
        for p in PLOTS:
            shutil.copy(tmp / "reports" / STUDY / p, ROOT / "docs" / "images" / p)
        print(f"README figures written from a fresh run ({took:.0f} s)")
        return 0
    bad = [name for name, block in want.items() if marked(text, name).group(1) != block]
    for name in bad:
        print(f"README block {name!r} differs from a fresh run:\n--- README\n"
              f"{marked(text, name).group(1)}\n--- fresh run\n{want[name]}\n")
    print(f"{'MISMATCH' if bad else 'ok'}: README's quoted figures vs a fresh `ablab run "
          f"{STUDY}` ({took:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
