"""JSCC quality against the analog references and the separation baselines, and the learning curves.

Runs ``scenarios/awgn_jscc_vs_sscc.yaml`` (or reads a finished run directory) and
records, for the embedded default (500 test images, seed 1234, k = 486 complex
channel uses per 28x28 image, k/n = 0.62, AWGN):

- the mean per-image PSNR of every scheme at 0, 5, 10, 15 and 20 dB: PCA-DeepJSCC
  (the SNR-adaptive model and the three models trained at 1 / 10 / 19 dB),
  ``uncoded``, ``linear`` and the separation baselines, and each baseline's cliff;
- the margins of the adaptive model and of the best per-SNR model over ``linear``
  at every SNR of the sweep (issue 10: at or above ``linear`` everywhere);
- the adaptive model against each per-SNR model at its training SNR (issue 10:
  within 0.5 dB);
- the learning curve of every shipped PCA-DeepJSCC model, from its store folder
  (``history.json``, ``card.json``): validation PSNR per epoch against optimiser
  steps and training wall time (what a longer run would buy).

Usage::

    python benchmarks/jscc_quality.py [--run-dir runs/awgn_jscc_vs_sscc]

Writes ``benchmarks/results/jscc_quality.json`` and ``.md``; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recording import machine_facts, write_results

REPO = Path(__file__).resolve().parents[1]
POINTS = (0.0, 5.0, 10.0, 15.0, 20.0)
LINEAR = "Linear (PCA + LMMSE)"
ADAPTIVE = "PCA-DeepJSCC (SNR-adaptive)"
PER_SNR = {1.0: "PCA-DeepJSCC (SNR_train 1 dB)", 10.0: "PCA-DeepJSCC (SNR_train 10 dB)",
           19.0: "PCA-DeepJSCC (SNR_train 19 dB)"}
#: epochs shown in the learning-curve table
CURVE_EPOCHS = (1, 2, 5, 10, 15, 20, 25, 30)
#: issue 10: the adaptive model within this much of the per-SNR models
ADAPTIVE_TOLERANCE_DB = 0.5


def cliff_db(g: pd.DataFrame) -> float | None:
    """Lowest SNR from which no image of a separation scheme fails to decode."""
    g = g.sort_values("snr_db")
    ok = g["decode_failures"].fillna(1).to_numpy() == 0
    for i in range(len(g)):
        if ok[i:].all():
            return float(g["snr_db"].iloc[i])
    return None


def learning_curves(meta: dict) -> dict:
    """Per stored JSCC model of the run: validation PSNR per epoch, steps, cumulative seconds."""
    out = {}
    for s in meta.get("schemes", []):
        path = s.get("stored_model")
        if not path or not (Path(path) / "history.json").exists():
            continue
        h = json.loads((Path(path) / "history.json").read_text())
        card = json.loads((Path(path) / "card.json").read_text())
        secs = h.get("epoch_seconds") or []
        steps_per_epoch = (h.get("train_steps") or 0) / max(1, len(h.get("epoch", [])))
        cum, t = [], 0.0
        for x in secs:
            t += x
            cum.append(round(t, 1))
        out[s["label"]] = {"model": Path(path).name, "snr_train_db": card.get("snr_train_db"),
                           "epochs_run": h.get("epochs_run"), "best_epoch": h.get("best_epoch"),
                           "train_seconds": card.get("train_seconds"), "train_steps": card.get("train_steps"),
                           "machine": card.get("machine"),
                           "val_psnr_db": [round(v, 2) for v in h.get("val_psnr_db", [])],
                           "steps": [int(round(steps_per_epoch * e)) for e in h.get("epoch", [])],
                           "cumulative_seconds": cum}
    return out


def analyse(df: pd.DataFrame, meta: dict) -> dict:
    digital = df[df["ber"].notna()] if "ber" in df.columns else df.iloc[:0]
    psnr = df.pivot_table(index="snr_db", columns="scheme", values="psnr_db")
    out = {"points": {}, "cliffs_db": {}, "checks": {}}
    for label, g in df.groupby("scheme", sort=False):
        sel = g[g["snr_db"].isin(POINTS)].sort_values("snr_db")
        out["points"][label] = {f"{s:g}": round(float(p), 2) for s, p in zip(sel["snr_db"], sel["psnr_db"])}
    for label, g in digital.groupby("scheme", sort=False):
        out["cliffs_db"][label] = cliff_db(g)
    per = [l for l in PER_SNR.values() if l in psnr]
    best_per = psnr[per].max(axis=1)
    adaptive_margin = (psnr[ADAPTIVE] - psnr[LINEAR]).round(2)
    best_margin = (best_per - psnr[LINEAR]).round(2)
    best_sep = psnr[list(out["cliffs_db"])].max(axis=1)
    vs_per = {f"{snr:g}": round(float(psnr.loc[snr, ADAPTIVE] - psnr.loc[snr, label]), 2)
              for snr, label in PER_SNR.items() if label in psnr and snr in psnr.index}
    out["checks"] = {
        "adaptive_minus_linear_db": {f"{s:g}": float(v) for s, v in adaptive_margin.items()},
        "best_per_snr_minus_linear_db": {f"{s:g}": float(v) for s, v in best_margin.items()},
        "adaptive_at_or_above_linear_everywhere": bool((adaptive_margin >= 0).all()),
        "best_per_snr_at_or_above_linear_everywhere": bool((best_margin >= 0).all()),
        "adaptive_minus_per_snr_model_at_its_training_snr_db": vs_per,
        "adaptive_within_0_5_db_of_per_snr_models": bool(all(v >= -ADAPTIVE_TOLERANCE_DB for v in vs_per.values())),
        "adaptive_minus_best_separation_db": {f"{s:g}": round(float(psnr.loc[s, ADAPTIVE] - best_sep[s]), 2)
                                              for s in psnr.index},
        "adaptive_beats_every_separation_baseline_everywhere": bool((psnr[ADAPTIVE] > best_sep).all()),
    }
    out["learning_curves"] = learning_curves(meta)
    return out


def markdown(res: dict) -> str:
    lines = ["Mean per-image PSNR [dB], embedded default (500 test images, seed 1234, k = 486, AWGN):", "",
             "| scheme | " + " | ".join(f"{s:g} dB" for s in POINTS) + " | cliff |",
             "|---|" + "---|" * (len(POINTS) + 1)]
    for label, pts in res["points"].items():
        cells = [f"{pts[f'{s:g}']:.2f}" if f"{s:g}" in pts else "" for s in POINTS]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {res['cliffs_db'].get(label, '')} |")
    c = res["checks"]
    pick = lambda d: ", ".join(f"{k}: {v:+.2f}" for k, v in d.items() if float(k) in POINTS)  # noqa: E731
    lines += ["", f"Adaptive minus linear [dB]: {pick(c['adaptive_minus_linear_db'])} "
                  f"(at or above everywhere in the sweep: {c['adaptive_at_or_above_linear_everywhere']}).",
              f"Best per-SNR model minus linear [dB]: {pick(c['best_per_snr_minus_linear_db'])} "
              f"(at or above everywhere: {c['best_per_snr_at_or_above_linear_everywhere']}).",
              f"Adaptive minus the per-SNR model at its training SNR [dB]: "
              f"{c['adaptive_minus_per_snr_model_at_its_training_snr_db']} "
              f"(within 0.5 dB: {c['adaptive_within_0_5_db_of_per_snr_models']}).",
              f"Adaptive beats every separation baseline at every SNR: "
              f"{c['adaptive_beats_every_separation_baseline_everywhere']}"
              + ("" if c["adaptive_beats_every_separation_baseline_everywhere"] else
                 " (behind the best one at " + ", ".join(f"{k} dB ({v:+.2f})" for k, v in
                                                        c["adaptive_minus_best_separation_db"].items() if v <= 0)
                 + ")") + ".", "",
              "Learning curves: validation PSNR [dB] after the given epoch (126 steps of 64 images each; the "
              "adaptive model's validation images have SNRs evenly spread over 0-20 dB), and the training wall "
              "time on this CPU:", "",
              "| model | " + " | ".join(f"epoch {e}" for e in CURVE_EPOCHS) + " | steps | time |",
              "|---|" + "---|" * (len(CURVE_EPOCHS) + 2)]
    for label, lc in res["learning_curves"].items():
        vals = [f"{lc['val_psnr_db'][e - 1]:.2f}" if e <= len(lc["val_psnr_db"]) else "" for e in CURVE_EPOCHS]
        secs = lc["train_seconds"]
        lines.append(f"| {label} | " + " | ".join(vals) + f" | {lc['train_steps']} | "
                     f"{'' if secs is None else f'{secs / 60:.1f} min'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=str(REPO / "runs" / "awgn_jscc_vs_sscc"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "jscc_quality.json"))
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    if not (run / "results.csv").exists():
        subprocess.run([sys.executable, "-m", "linksim.cli", "run", str(REPO / "scenarios" / "awgn_jscc_vs_sscc.yaml"),
                        "--out", str(run), "--no-progress"], check=True)
    df = pd.read_csv(run / "results.csv")
    meta = json.loads((run / "meta.json").read_text()) if (run / "meta.json").exists() else {}
    res = analyse(df[df["snr_db"].notna()], meta)
    res.update(run_dir=str(run), test_images=meta.get("test_images"), channel_uses=meta.get("channel_uses"),
               bandwidth_ratio=meta.get("bandwidth_ratio"), run_wall_time_s=meta.get("wall_time_s"),
               **machine_facts())
    write_results(args.out, res)
    Path(args.out).with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    c = res["checks"]
    ok = c["adaptive_at_or_above_linear_everywhere"] and c["adaptive_within_0_5_db_of_per_snr_models"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
