"""The ``linksim`` command: ``run | train | validate | list | plot``.

A thin layer over :mod:`linksim.scenario`, :mod:`linksim.run` and
:mod:`linksim.plotting`.  ``--plugin FILE.py`` (repeatable, on every command)
imports a user module that registers components before anything is validated
(:func:`linksim.registry.load_plugin`; ``docs/extending.md``).  ``main(argv)`` returns the exit code:

- 0 success;
- 1 the run failed (an unexpected error: its traceback is printed);
- 2 bad input (scenario file, data set, output directory): a one-paragraph
  message naming the file, the line, the field and the allowed values, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

__all__ = ["main"]


def _quiet_tensorflow() -> None:
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing notices


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linksim", description="End-to-end link simulator for semantic image communication.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")

    def plugin_flag(sp):
        sp.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import a Python file that registers components (repeatable)")

    r = sub.add_parser("run", help="run a scenario and write results, metadata and plots")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--out", help="run directory (default runs/<scenario name>[_quick])")
    r.add_argument("--quick", action="store_true", help="smoke size: few images, few SNR points")
    r.add_argument("--overwrite", action="store_true", help="replace another scenario's results in --out")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--store", help="model store folder to search first and write to (default: "
                                    "$LINKSIM_MODEL_STORE or ~/.cache/linksim/models, then the shipped weights)")
    plugin_flag(r)

    t = sub.add_parser("train", help="train (or find in the model store) every model a scenario needs")
    t.add_argument("scenario", help="scenario YAML file")
    t.add_argument("--store", help="model store folder to search first and write to "
                                    "(default $LINKSIM_MODEL_STORE or ~/.cache/linksim/models)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    plugin_flag(t)

    v = sub.add_parser("validate", help="check a scenario file")
    v.add_argument("scenario", nargs="+")
    plugin_flag(v)

    ls = sub.add_parser("list", help="every registry (schemes, channels, relays, data sets, metrics, tasks, "
                                     "plots, ...) and the stored models")
    plugin_flag(ls)

    pl = sub.add_parser("plot", help="redraw a run directory's plots from its results.csv")
    pl.add_argument("run_dir")
    pl.add_argument("--only", nargs="+", help="plot names (default: the scenario's plots)")
    plugin_flag(pl)
    return p


def _train_cost(card: dict) -> str:
    """``", 123 s on CPU"`` from a card's training facts ("" for a card without them)."""
    secs = card.get("train_seconds")
    if not isinstance(secs, (int, float)):
        return ""
    device = (card.get("machine") or {}).get("device") if isinstance(card.get("machine"), dict) else None
    return f", {secs:.0f} s" + (f" on {device}" if device else "")


def _cmd_list() -> int:
    from linksim import registry

    for title, reg in registry.ALL.items():
        print(f"{title}:")
        for name, doc in reg.describe().items():
            print(f"  {name:<24} {doc}")
    from linksim.store import default_store

    cards = default_store().list()
    print("stored models:" + ("" if cards else " (none)"))
    for c in cards:
        head = f"  {c.get('name', '?')}-{c.get('key', '?')}"
        cost = _train_cost(c)
        if "final_val_accuracy" in c:  # a downstream classifier
            ds = c.get("spec", {}).get("dataset", {}).get("name", "?")
            print(f"{head}  classifier on {ds}  {c.get('epochs_run', '?')} epochs{cost}  "
                  f"val accuracy {c['final_val_accuracy']:.3f}  {c['path']}")
            continue
        psnr = c.get("final_val_psnr_db")
        psnr = f"val PSNR {psnr:.2f} dB" if isinstance(psnr, (int, float)) else ""
        print(f"{head}  {c.get('scheme_label', '')}  SNR_train {c.get('snr_train_db')} dB  "
              f"k {c.get('channel_uses')}  {c.get('epochs_run', '?')} epochs{cost}  {psnr}  {c['path']}")
    return 0


def _cmd_validate(paths) -> int:
    from linksim.scenario import load_scenario

    bad = 0
    for path in paths:
        scen = load_scenario(path)
        _build_all(scen)
        print(f"{path}: ok ({len(scen.schemes)} scheme(s), {len(scen.snr_db)} SNR point(s))")
    return 2 if bad else 0


def _build_all(scen) -> None:
    """Construct every scheme once, so bad scheme options fail at validation."""
    from linksim.run.setup import build_scheme

    for i in range(len(scen.schemes)):
        build_scheme(scen, i)


def _cmd_run(args) -> int:
    from linksim.run.evaluation import run_scenario
    from linksim.scenario import load_scenario

    scen = load_scenario(args.scenario)
    _build_all(scen)
    if args.quick:
        scen = scen.quick()
    out = args.out or os.path.join("runs", scen.name + ("_quick" if args.quick else ""))
    from linksim.store import default_store

    df = run_scenario(scen, out, overwrite=args.overwrite, progress=not args.no_progress,
                      store=default_store(args.store))
    cols = [c for c in ("scheme", "snr_db", "psnr_db", "ssim", "bpp", "ber", "bler", "decode_failures",
                        "accuracy", "f1") if c in df.columns]
    if "channel_uses" in df.columns and df["channel_uses"].nunique() > 1:
        cols.insert(1, "channel_uses")
    import pandas as pd

    with pd.option_context("display.max_rows", 200, "display.width", 160):
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nresults: {os.path.join(out, 'results.csv')}")
    return 0


def _cmd_train(args) -> int:
    from linksim.run.evaluation import train_scenario
    from linksim.scenario import load_scenario
    from linksim.store import default_store

    scen = load_scenario(args.scenario)
    _build_all(scen)
    done = train_scenario(scen, store=default_store(args.store), progress="epochs" if args.no_progress else True)
    if not done:
        print(f"{args.scenario}: no scheme needs training")
    for d in done:
        print(f"{d['scheme']}: {d['stored_model']}")
    return 0


def _cmd_plot(args) -> int:
    from linksim.plotting import draw_plots

    for p in draw_plots(args.run_dir, args.only):
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``linksim`` command; returns the exit code."""
    _quiet_tensorflow()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from linksim import __version__

        print(f"linksim {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    from linksim.registry import PluginError, UnknownNameError, load_plugins
    from linksim.run.directory import RunError
    from linksim.scenario import ScenarioError

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("default", module="linksim")
            load_plugins(getattr(args, "plugin", []))
            if args.command == "list":
                return _cmd_list()
            if args.command == "validate":
                return _cmd_validate(args.scenario)
            if args.command == "run":
                return _cmd_run(args)
            if args.command == "train":
                return _cmd_train(args)
            if args.command == "plot":
                return _cmd_plot(args)
    except (ScenarioError, RunError, UnknownNameError, PluginError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished points are saved; run the same command again to resume", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
