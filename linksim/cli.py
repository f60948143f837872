"""The ``linksim`` command: ``run | train | validate | list | plot``.

A thin layer over :mod:`linksim.scenario`, :mod:`linksim.run` and
:mod:`linksim.plotting`.  ``--plugin FILE.py`` (repeatable, on every command)
imports a user module that registers components before anything is validated
(:func:`linksim.registry.load_plugin`; ``docs/extending.md``).  ``main(argv)`` returns
the exit code (:mod:`linksim.errors`, ``docs/errors.md``):

- 0 success;
- 1 the run failed (an unexpected error): one line naming it; ``--debug`` prints the traceback;
- 2 bad input (scenario file, data set, model store, output directory, command line): a
  one-paragraph message naming the file, the line, the field and the allowed values, no
  traceback (with ``--debug``, the traceback too);
- 130 interrupted.

``linksim validate`` imports no TensorFlow (built-in components are checked against
:mod:`linksim.catalog`); the other commands import it with its start-up notices kept off
the terminal (:func:`linksim.console.import_tensorflow_quietly`).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

__all__ = ["main"]


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up notices off the terminal, whenever it is imported."""
    from linksim import registry

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    registry.QUIET_STARTUP = True   # _load_builtin_components imports TensorFlow quietly


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linksim", description="End-to-end link simulator for semantic image communication.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = p.add_subparsers(dest="command")

    def plugin_flag(sp):
        sp.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import a Python file that registers components (repeatable)")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="print the traceback of an error")

    r = sub.add_parser("run", help="run a scenario and write results, metadata and plots")
    r.add_argument("scenario", help="scenario YAML file")
    r.add_argument("--out", help="run directory (default runs/<scenario name>[_quick])")
    r.add_argument("--quick", action="store_true", help="smoke size: few images, few SNR points")
    r.add_argument("--overwrite", action="store_true", help="replace another scenario's results in --out")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--store", help="model store folder to search first and write to (default: "
                                    "$LINKSIM_MODEL_STORE or ~/.cache/linksim/models, then the shipped weights)")
    r.add_argument("--workers", default="auto", type=_workers_arg, metavar="N",
                   help="worker processes on this machine: auto (default: one per core; 0 with --quick), or "
                        "a number; 0 evaluates in this process. Any N >= 1 gives the same results")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local (this machine, --workers processes) or ray (Ray tasks on a Ray cluster; "
                        "pip install \"linksim[ray]\")")
    r.add_argument("--ray-address", metavar="HOST:PORT",
                   help="the Ray cluster to use with --executor ray (default: $RAY_ADDRESS, else a local cluster)")
    plugin_flag(r)

    t = sub.add_parser("train", help="train (or find in the model store) every model a scenario needs")
    t.add_argument("scenario", help="scenario YAML file")
    t.add_argument("--store", help="model store folder to search first and write to "
                                    "(default $LINKSIM_MODEL_STORE or ~/.cache/linksim/models)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    plugin_flag(t)

    v = sub.add_parser("validate", help="check scenario files without running them (no TensorFlow; each "
                                        "file is reported)")
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


def _workers_arg(value: str):
    """``--workers``: ``auto`` or a non-negative integer."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be auto or a whole number >= 0 (0: in this process), got {value!r}")
    return n


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
        if c.get("task") == "hash":  # a deep hash network (DHD)
            ds = c.get("spec", {}).get("dataset", {}).get("name", "?")
            ret = c.get("retrieval") or {}
            score = f"mAP@{ret['top_n']} {ret['map']:.3f}" if "map" in ret else ""
            print(f"{head}  hash network ({c.get('bits', '?')} bits) on {ds}  {c.get('epochs_run', '?')} epochs"
                  f"{cost}  {score}  {c['path']}")
            continue
        psnr = c.get("final_val_psnr_db")
        psnr = f"val PSNR {psnr:.2f} dB" if isinstance(psnr, (int, float)) else ""
        print(f"{head}  {c.get('scheme_label', '')}  SNR_train {c.get('snr_train_db')} dB  "
              f"k {c.get('channel_uses')}  {c.get('epochs_run', '?')} epochs{cost}  {psnr}  {c['path']}")
    return 0


def _cmd_validate(paths, debug: bool = False) -> int:
    """Check each file; report each (``FILE: ok (...)`` on stdout, an error on stderr); 2 if any is bad."""
    from linksim.errors import is_user_error
    from linksim.scenario import load_scenario

    bad = 0
    for path in paths:
        try:
            scen = load_scenario(path)
            _build_all(scen, plugins_only=True)
        except Exception as exc:  # noqa: BLE001 - each file is reported, whatever its error
            if not is_user_error(exc):
                raise
            if debug:
                import traceback

                traceback.print_exc()
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
            continue
        from linksim.channel_sweep import channel_variants, is_sweep

        chains = len(channel_variants(scen.data["channel"])) if is_sweep(scen.data["channel"]) else 1
        print(f"{path}: ok ({len(scen.schemes)} scheme(s), {len(scen.snr_db)} SNR point(s)"
              + (f", {chains} chains" if chains > 1 else "") + ")")
    if len(paths) > 1 and bad:
        print(f"{bad} of {len(paths)} file(s) invalid", file=sys.stderr)
    return 2 if bad else 0


def _build_all(scen, plugins_only: bool = False) -> None:
    """Construct every scheme once, so bad scheme options fail before a run starts.

    ``plugins_only``: only the schemes a plug-in registers (``validate``: the built-in ones
    are checked against :mod:`linksim.catalog`, without TensorFlow).
    """
    from linksim import catalog

    todo = [i for i, s in enumerate(scen.schemes)
            if not plugins_only or s["type"] not in catalog.CATALOG["schemes"]]
    if not todo:
        return
    from linksim.run.setup import build_scheme

    for i in todo:
        build_scheme(scen, i)


def _cmd_run(args) -> int:
    from linksim.run.evaluation import run_scenario
    from linksim.scenario import load_scenario

    scen = load_scenario(args.scenario)
    _build_all(scen)
    if args.quick:
        scen = scen.quick()
    from linksim.run.directory import RunError, default_run_dir
    from linksim.store import default_store

    if args.out is not None and not args.out.strip():
        raise RunError("--out is empty; give a folder (it is created if missing), or leave --out out for "
                       f"runs/{scen.name}")
    out = args.out or str(default_run_dir(scen.name, args.quick))

    from linksim.run.parallel import default_workers

    workers = args.workers if args.workers != "auto" else (0 if args.quick else default_workers())
    if args.ray_address and args.executor != "ray":
        raise RunError("--ray-address needs --executor ray")
    df = run_scenario(scen, out, overwrite=args.overwrite, progress=not args.no_progress,
                      store=default_store(args.store), workers=workers, executor=args.executor,
                      ray_address=args.ray_address)
    cols = [c for c in ("scheme", "snr_db", "psnr_db", "ssim", "lpips", "lpips_vgg", "hash_cos", "retrieval_map",
                        "bpp", "ber", "bler", "decode_failures", "accuracy", "f1")
            if c in df.columns and (c in ("scheme", "snr_db") or df[c].notna().any())]
    if "channel_uses" in df.columns and df["channel_uses"].nunique() > 1:
        cols.insert(1, "channel_uses")
    from linksim.channel_sweep import is_sweep, variant_columns

    if is_sweep(scen.data["channel"]):  # a channel sweep: which chain each row is
        cols[1:1] = [c for c in variant_columns(scen.data["channel"]) if c in df.columns]
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


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one ``warning: ...`` line (no file, line or source; ``--debug`` shows them)."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``linksim`` command; returns the exit code (``docs/errors.md``)."""
    from linksim.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USER_ERROR, is_user_error

    _quiet_tensorflow()
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # argparse: --help (0) or a usage error (2), its message already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    debug = getattr(args, "debug", False)
    if args.version:
        from linksim import __version__

        print(f"linksim {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        print("error: no command given (allowed: run, train, validate, list, plot)", file=sys.stderr)
        return EXIT_USER_ERROR
    from linksim.registry import load_plugins

    saved_format = warnings.formatwarning
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("default", module="linksim")
            if not debug:
                warnings.formatwarning = _format_warning
            if args.command != "validate" or getattr(args, "plugin", []):
                _import_tensorflow()
            load_plugins(getattr(args, "plugin", []))
            if args.command == "list":
                return _cmd_list()
            if args.command == "validate":
                return _cmd_validate(args.scenario, debug)
            if args.command == "run":
                return _cmd_run(args)
            if args.command == "train":
                return _cmd_train(args)
            if args.command == "plot":
                return _cmd_plot(args)
    except KeyboardInterrupt:
        print("interrupted: finished points are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        user = is_user_error(exc)
        if debug:
            import traceback

            traceback.print_exc()
        if user:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"error: linksim failed: {type(exc).__name__}: {exc}" + ("" if debug else
              " (run again with --debug for the traceback; please report it if the input looks right)"),
              file=sys.stderr)
        return EXIT_FAILURE
    finally:
        warnings.formatwarning = saved_format
    parser.error(f"unknown command {args.command}")
    return EXIT_USER_ERROR


def _import_tensorflow() -> None:
    from linksim.console import import_tensorflow_quietly

    import_tensorflow_quietly()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
