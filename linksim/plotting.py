"""Plots drawn from a run directory's saved results (never from memory).

Each plot is registered in :data:`linksim.registry.PLOTS` under the name a scenario's
``plots:`` list uses: a function ``draw(df, scenario, run_dir) -> Path | None`` (the
results table, the resolved scenario as a dict, the run directory) that writes
``<name>.png`` into the run directory, or returns None when it has nothing to draw.  ``linksim plot
RUN_DIR`` redraws them all from ``results.csv`` and ``scenario.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from linksim.channel_sweep import (channel_variants, format_value, is_sweep, is_sweep_list,  # noqa: E402
                                   variant_columns)
from linksim.registry import PLOTS  # noqa: E402
from linksim.run.directory import (REFERENCE, RunDirectory, RunError, example_path, is_reference,  # noqa: E402
                                   read_results)
from linksim.scenario import option_plot  # noqa: E402

__all__ = ["PLOTS", "draw_plots", "plot_function"]

_MARKERS = "osD^v<>ph*"

#: The results columns each registered plot draws (besides ``scheme`` and ``snr_db``).
PLOT_COLUMNS: dict[str, tuple[str, ...]] = {"accuracy_vs_snr": ("accuracy",)}


def _split_reference(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The schemes' rows and the reference row(s) (the tasks on the original images)."""
    is_ref = is_reference(df)
    return df[~is_ref], df[is_ref]


def _reference_line(ax, ref: pd.DataFrame, column: str, label: str = REFERENCE) -> None:
    """The reference value of ``column`` as a dotted horizontal line, when there is one."""
    if len(ref) and column in ref.columns and pd.notna(ref[column].iloc[0]):
        value = float(ref[column].iloc[0])
        ax.axhline(value, color="k", linestyle=":", linewidth=1.2,
                   label=f"{label} ({value:.3g})" if label == REFERENCE else label)


def _low_mid_high(values) -> list:
    """The lowest, middle and highest of sorted ``values`` (fewer if they coincide)."""
    return sorted({values[0], values[len(values) // 2], values[-1]})


#: ``scheme_type`` of the analog references (``uncoded``, ``linear``): drawn dash-dotted and thinner
_REFERENCE_TYPES = ("UncodedScheme", "LinearScheme")


def _line_style(g: pd.DataFrame) -> dict:
    """Separation (digital) schemes dashed, JSCC (analog) schemes solid: the cliff against the slope;
    the analog references (no training) dash-dotted and thinner."""
    if "scheme_type" in g.columns and g["scheme_type"].isin(_REFERENCE_TYPES).all():
        return {"linestyle": "-.", "linewidth": 1.2, "markersize": 3}
    digital = "ber" in g.columns and g["ber"].notna().any()
    return {"linestyle": "--" if digital else "-", "markersize": 4}


def _curves(df: pd.DataFrame, column: str, ax, *, log: bool = False) -> bool:
    """One line per scheme of ``column`` against ``snr_db``; False when nothing to draw."""
    if column not in df.columns:
        return False
    drawn = False
    df, _ = _split_reference(df)
    sweep = "channel_uses" in df.columns and df["channel_uses"].nunique() > 1
    groups = df.groupby(["scheme", "channel_uses"], sort=False) if sweep else df.groupby("scheme", sort=False)
    for i, (key, g) in enumerate(groups):
        label = f"{key[0]}, k = {key[1]:g}" if sweep else key
        g = g.sort_values("snr_db")
        y = g[column].astype(float)
        if y.isna().all():
            continue
        if log:
            # zero error rates cannot be drawn on a log axis: they are left out of the line
            y = y.where(y > 0)
        ax.plot(g["snr_db"], y, marker=_MARKERS[i % len(_MARKERS)], label=label, **_line_style(g))
        drawn = True
    if log:
        ax.set_yscale("log")
    return drawn


def _finish(fig, ax, title: str, xlabel: str, ylabel: str, path: Path, note: str | None = None):
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, alpha=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _chains(df: pd.DataFrame, scenario: dict) -> list[tuple[str, pd.DataFrame]]:
    """``[(tag, rows)]`` per chain of a channel sweep (:mod:`linksim.channel_sweep`), in sweep order;
    one untagged entry when the scenario has one chain."""
    ch = scenario.get("channel") or {}
    if not (isinstance(ch, dict) and is_sweep(ch)):
        return [("", df)]
    cols = [c for c in variant_columns(ch) if c in df.columns]
    out = []
    for v in channel_variants(ch):
        mask = pd.Series(True, index=df.index)
        for c in cols:
            mask &= _matches(df[c], v.columns.get(c))
        if mask.any():
            out.append((v.tag, df[mask]))
    return out or [("", df)]


def _matches(column: pd.Series, want) -> pd.Series:
    """Rows whose chain column holds ``want`` (None: empty; a number or a name as read back from results.csv)."""
    if want is None:
        return column.isna()
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return pd.to_numeric(column, errors="coerce") == want
    return column.astype(str) == str(want)


def _first_chain(df: pd.DataFrame, scenario: dict) -> tuple[pd.DataFrame, str]:
    """The rows of the first chain of a channel sweep and its tag (a plot that does not split by chain)."""
    _, ref = _split_reference(df)
    tag, rows = _chains(df, scenario)[0]
    return (pd.concat([rows[~is_reference(rows)], ref]) if tag else df), tag


def _panel_grid(n: int, width: float = 4.2, height: float = 3.6):
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _simple(name: str, column: str, ylabel: str, log: bool = False, note: str | None = None, extra=None):
    """Register a plot of ``column`` against SNR; ``extra(ax, rows, scenario, tag)`` adds to each panel
    (its docstring is appended to the plot's)."""
    def draw(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
        chains = _chains(df, scenario)
        _, ref = _split_reference(df)
        path = run_dir / f"{name}.png"
        subtitle = _rate_note(scenario, df)
        title = f"{scenario.get('name', '')}: {ylabel.split(' [')[0]} vs SNR"
        if len(chains) == 1:
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            if not _curves(df, column, ax, log=log):
                plt.close(fig)
                return None
            if extra:
                extra(ax, df, scenario, chains[0][0])
            _reference_line(ax, ref, column)
            _finish(fig, ax, f"{title}\n{subtitle}", "SNR (Es/N0 per hop) [dB]", ylabel, path, note)
            return path
        fig, axes = _panel_grid(len(chains))   # a channel sweep: one panel per chain
        drawn = False
        for ax, (tag, g) in zip(axes, chains):
            drawn |= _curves(g, column, ax, log=log)
            if extra:
                extra(ax, g, scenario, tag)
            _reference_line(ax, ref, column)
            ax.set_title(tag, fontsize=9)
            ax.set_xlabel("SNR (Es/N0 per hop) [dB]")
            ax.grid(True, which="both", alpha=0.3)
        if not drawn:
            plt.close(fig)
            return None
        axes[0].set_ylabel(ylabel)
        axes[-1].legend(fontsize=7)
        fig.suptitle(f"{title}\n{subtitle}", fontsize=10)
        if note:
            fig.text(0.01, 0.01, note, fontsize=7, alpha=0.7)
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)
        return path

    draw.__doc__ = f"{ylabel} against SNR, one line per scheme (a channel sweep: one panel per chain)."
    if extra is not None:
        draw.__doc__ += " " + " ".join((extra.__doc__ or "").split())
    PLOT_COLUMNS[name] = (column,)
    PLOTS.register(name)(draw)
    return draw


def _rate_note(scenario: dict, df: pd.DataFrame) -> str:
    rate = scenario.get("rate", {})
    parts = []
    ch = scenario.get("channel", {})
    if ch.get("type") == "multihop":
        relay = ch.get("relay", "af")
        relay = relay if isinstance(relay, str) else "/".join(relay)
        hops = ch.get("hops", 2)
        hops = f"{min(hops)}-{max(hops)}" if isinstance(hops, list) else hops
        swept = ", ".join(f"{k} {'/'.join(map(format_value, v))}" for k, v in (ch.get("relay_params") or {}).items()
                          if is_sweep_list(v))
        parts.append(f"{hops} hops, {relay.upper()} relay" + (f" ({swept})" if swept else ""))
    cu = df["channel_uses"].dropna() if "channel_uses" in df.columns else []
    if len(cu):
        parts.append(f"{cu.iloc[0]:g} channel uses/image")
    if "bandwidth_ratio" in rate:
        parts.append(f"k/n = {rate['bandwidth_ratio']:g}")
    ds = scenario.get("dataset", {}).get("name")
    if ds:
        parts.append(ds)
    return ", ".join(parts)


def _chain_spec(scenario: dict, tag: str):
    """The ``channel`` mapping of the chain ``tag`` (:func:`_chains`; none written: AWGN); None when no
    variant has that tag."""
    ch = scenario.get("channel") or {"type": "awgn"}
    if not (isinstance(ch, dict) and is_sweep(ch)):
        return ch
    return next((v.spec for v in channel_variants(ch) if v.tag == tag), None)


def _uncoded(scheme) -> bool:
    code = scheme.get("channel_code") if isinstance(scheme, dict) else None
    return code == "none" or (isinstance(code, dict) and code.get("type") == "none")


def _theory_lines(ax, rows: pd.DataFrame, scenario: dict, tag: str) -> None:
    """Each uncoded separation scheme (``channel_code: {type: none}``) on AWGN or Rayleigh fading with
    perfect CSI also gets its closed-form BER (:func:`linksim.phy.theory.theory_curve`) as a thin dotted
    line over the panel's SNR range, in the scheme's colour (values below 1e-7 not drawn)."""
    schemes = [s for s in scenario.get("schemes") or [] if _uncoded(s)]
    d, _ = _split_reference(rows)
    snr = pd.to_numeric(d["snr_db"], errors="coerce").dropna() if "snr_db" in d.columns else pd.Series(dtype=float)
    if not schemes or snr.empty:
        return
    from linksim.phy.theory import theory_curve  # deferred: the package linksim.phy loads Sionna

    spec = _chain_spec(scenario, tag)
    if spec is None:
        return
    lo, hi = float(snr.min()), float(snr.max())
    grid = np.linspace(lo, hi, 241) if hi > lo else np.linspace(lo - 1, hi + 1, 21)
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    shown = set()
    for s in schemes:
        curve = theory_curve(s, spec)
        if curve is None:
            continue
        label, ber_of = curve
        ber = np.asarray(ber_of(grid), dtype=float)
        ax.plot(grid, np.where(ber >= 1e-7, ber, np.nan), linestyle=":", linewidth=1.0,
                color=colours.get(str(s.get("label")), "k"), label=label if label not in shown else f"_{label}")
        shown.add(label)


_simple("psnr_vs_snr", "psnr_db", "PSNR [dB]")
_simple("ssim_vs_snr", "ssim", "SSIM")
_simple("ms_ssim_vs_snr", "ms_ssim", "MS-SSIM")
_simple("lpips_vs_snr", "lpips", "LPIPS (AlexNet, lower is better)")
_simple("lpips_vgg_vs_snr", "lpips_vgg", "LPIPS (VGG16, lower is better)")
_simple("ber_vs_snr", "ber", "BER (information bits)", log=True,
        note="points with zero errors are not drawn", extra=_theory_lines)
_simple("bler_vs_snr", "bler", "BLER (codewords)", log=True,
        note="points with zero errors are not drawn")
_simple("bpp_vs_snr", "bpp", "Source rate [bits per pixel]")
_simple("hash_cos_vs_snr", "hash_cos", "Hash agreement cos(H(S), H(S'))")
_simple("hash_hamming_norm_vs_snr", "hash_hamming_norm", "Flipped hash bits (fraction of K)")
_simple("retrieval_map_vs_snr", "retrieval_map", "Retrieval mAP@1000 (received images as queries)")


def _vs_hops(name: str, column: str, ylabel: str):
    def draw(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
        if column not in df.columns or "hops" not in df.columns:
            return None
        d, ref = _split_reference(df)
        d = d[d[column].notna()]
        hops = pd.to_numeric(d["hops"], errors="coerce")
        if hops.nunique() < 2:
            return None  # the scenario does not sweep the hops
        d = d.assign(_hops=hops)
        ch = scenario.get("channel") or {}
        opt_cols = [c for c in variant_columns(ch) if c != "hops" and c in d.columns] if isinstance(ch, dict) else []
        # one row of panels per value of the swept relay options (a one-hop chain, which has none, is in every row)
        combos = [()] if not opt_cols else list(dict.fromkeys(
            tuple(r) for r in d.loc[d["_hops"] > 1, opt_cols].itertuples(index=False, name=None)))
        pick = _low_mid_high(sorted(d["snr_db"].dropna().unique()))
        fig, axes = plt.subplots(len(combos), len(pick), figsize=(4.2 * len(pick), 3.6 * len(combos)),
                                 squeeze=False, sharey=True)
        for r, combo in enumerate(combos):
            rows = d
            if combo:
                mask = d["_hops"] == 1
                inner = pd.Series(True, index=d.index)
                for c, v in zip(opt_cols, combo):
                    inner &= _matches(d[c], v)
                rows = d[mask | inner]
            for ax, snr in zip(axes[r], pick):
                at = rows[rows["snr_db"] == snr]
                for i, (label, g) in enumerate(at.groupby("scheme", sort=False)):
                    g = g.sort_values("_hops")
                    ax.plot(g["_hops"], g[column], marker=_MARKERS[i % len(_MARKERS)], label=label, **_line_style(g))
                _reference_line(ax, ref, column)
                extra = ", ".join(f"{c[len('relay_'):]} {format_value(v)}" for c, v in zip(opt_cols, combo))
                ax.set_title(f"SNR {snr:g} dB per hop" + (f", {extra}" if extra else ""), fontsize=9)
                ax.set_xlabel("hops")
                ax.set_xticks(sorted(d["_hops"].unique()))
                ax.grid(True, alpha=0.3)
            axes[r, 0].set_ylabel(ylabel)
        axes[0, -1].legend(fontsize=7)
        fig.suptitle(f"{scenario.get('name', '')}: {ylabel.split(' [')[0]} vs number of hops\n"
                     f"{_rate_note(scenario, df)}", fontsize=10)
        fig.tight_layout()
        path = run_dir / f"{name}.png"
        fig.savefig(path, dpi=130)
        plt.close(fig)
        return path

    draw.__doc__ = (f"{ylabel} against the number of hops at low, middle and high SNR (a sweep over hops; "
                    f"a row of panels per value of a swept relay option).")
    PLOT_COLUMNS[name] = (column, "hops")
    PLOTS.register(name)(draw)
    return draw


for _metric, _column, _label in (("psnr", "psnr_db", "PSNR [dB]"), ("ssim", "ssim", "SSIM"),
                                 ("lpips", "lpips", "LPIPS (AlexNet, lower is better)"),
                                 ("accuracy", "accuracy", "Classification accuracy"),
                                 ("hash_cos", "hash_cos", "Hash agreement cos(H(S), H(S'))"),
                                 ("hash_hamming_norm", "hash_hamming_norm", "Flipped hash bits (fraction of K)"),
                                 ("retrieval_map", "retrieval_map", "Retrieval mAP@1000")):
    _vs_hops(f"{_metric}_vs_hops", _column, _label)


draw_accuracy = _simple("accuracy_vs_snr", "accuracy", "Classification accuracy")  # the reference dotted


_simple("feature_accuracy_vs_snr", "feature_accuracy", "Accuracy in feature space (received features, no decoding)")


@PLOTS.register("used_channel_uses_vs_snr")
def draw_used_channel_uses(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
    """Channel uses actually spent per image against SNR (mean, shaded +- one standard deviation), with k dotted."""
    if "used_channel_uses" not in df.columns:
        return None
    df, chain = _first_chain(df, scenario)
    d, _ = _split_reference(df)
    d = d[d["used_channel_uses"].notna()]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (label, g) in enumerate(d.groupby("scheme", sort=False)):
        g = g.sort_values("snr_db")
        line, = ax.plot(g["snr_db"], g["used_channel_uses"], marker=_MARKERS[i % len(_MARKERS)], label=label,
                        **_line_style(g))
        if "used_channel_uses_std" in g.columns and g["used_channel_uses_std"].notna().any():
            sd = g["used_channel_uses_std"].fillna(0.0).astype(float)
            ax.fill_between(g["snr_db"], g["used_channel_uses"] - sd, g["used_channel_uses"] + sd,
                            color=line.get_color(), alpha=0.15)
    for k in sorted(d["channel_uses"].dropna().unique()):
        ax.axhline(k, color="k", linestyle=":", linewidth=1)
        ax.annotate(f"allocated k = {k:g}", (ax.get_xlim()[0], k), fontsize=7, va="bottom")
    _finish(fig, ax, f"{scenario.get('name', '')}: channel uses spent vs SNR" + (f" ({chain})" if chain else ""),
            "SNR (Es/N0 per hop) [dB]", "channel uses per image (mean, +- 1 sd)",
            run_dir / "used_channel_uses_vs_snr.png")
    return run_dir / "used_channel_uses_vs_snr.png"


PLOT_COLUMNS["used_channel_uses_vs_snr"] = ("used_channel_uses",)


@PLOTS.register("accuracy_vs_used_channel_uses")
def draw_accuracy_vs_used(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
    """Accuracy against the channel uses actually spent, one point per (scheme, SNR): feature space and decoded.

    Left panel: classification of the received features (``feature_accuracy``); right:
    the image classifier on the decoded images (``accuracy``, reference dotted). A
    scheme whose spending varies with the SNR is a line with each point labelled by
    its SNR; one that always spends the same is a column of markers (slightly offset
    so they do not hide each other).
    """
    if "used_channel_uses" not in df.columns:
        return None
    df, chain = _first_chain(df, scenario)
    d, ref = _split_reference(df)
    panels = [(c, t) for c, t in (("feature_accuracy", "in feature space (received features)"),
                                  ("accuracy", "decoded images + classifier")) if c in d.columns and d[c].notna().any()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    schemes = list(dict.fromkeys(d["scheme"]))
    for ax, (column, title) in zip(axes[0], panels):
        fixed = 0
        for i, label in enumerate(schemes):
            g = d[(d["scheme"] == label) & d[column].notna()].sort_values("snr_db")
            if g.empty:
                continue
            style = dict(color=colors[i % len(colors)], marker=_MARKERS[i % len(_MARKERS)], label=label)
            if g["used_channel_uses"].nunique() > 1:
                ax.plot(g["used_channel_uses"], g[column], linestyle="-", markersize=5, **style)
                for x, y, snr in zip(g["used_channel_uses"], g[column], g["snr_db"]):
                    ax.annotate(f"{snr:g}", (x, y), fontsize=6, alpha=0.7, xytext=(3, 2), textcoords="offset points")
            else:
                x = g["used_channel_uses"] + 1.5 * fixed
                fixed += 1
                ax.plot(x, g[column], linestyle="none", markersize=4, alpha=0.8, **style)
        if column == "accuracy":
            _reference_line(ax, ref, "accuracy")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("channel uses per image actually spent (labels: SNR in dB)")
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("classification accuracy")
    axes[0, -1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{scenario.get('name', '')}: accuracy vs channel uses spent" + (f" ({chain})" if chain else ""),
                 fontsize=10)
    fig.tight_layout()
    path = run_dir / "accuracy_vs_used_channel_uses.png"
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


PLOT_COLUMNS["accuracy_vs_used_channel_uses"] = ("used_channel_uses",)


def _vs_rate(name: str, column: str, ylabel: str):
    def draw(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
        if column not in df.columns or "channel_uses" not in df.columns:
            return None
        df, chain = _first_chain(df, scenario)  # a channel sweep: the first chain
        d, ref = _split_reference(df)
        if d["channel_uses"].nunique() < 2 or d[column].isna().all():
            return None  # the scenario does not sweep the rate
        pick = _low_mid_high(sorted(d["snr_db"].dropna().unique()))
        fig, axes = plt.subplots(1, len(pick), figsize=(4.2 * len(pick), 4.0), squeeze=False, sharey=True)
        for ax, snr in zip(axes[0], pick):
            at = d[d["snr_db"] == snr]
            for i, (label, g) in enumerate(at.groupby("scheme", sort=False)):
                g = g.sort_values("bandwidth_ratio" if "bandwidth_ratio" in g.columns else "channel_uses")
                x = g["bandwidth_ratio"] if "bandwidth_ratio" in g.columns else g["channel_uses"]
                ax.plot(x, g[column], marker=_MARKERS[i % len(_MARKERS)], label=label, **_line_style(g))
            _reference_line(ax, ref, column)
            ax.set_title(f"SNR {snr:g} dB", fontsize=9)
            ax.set_xlabel("bandwidth ratio k/n")
            ax.grid(True, alpha=0.3)
        axes[0, 0].set_ylabel(ylabel)
        axes[0, -1].legend(fontsize=7)
        fig.suptitle(f"{scenario.get('name', '')}: {ylabel.split(' [')[0]} vs rate" + (f" ({chain})" if chain else ""),
                     fontsize=10)
        fig.tight_layout()
        path = run_dir / f"{name}.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        return path

    draw.__doc__ = f"{ylabel} against the bandwidth ratio k/n at low, middle and high SNR (rate sweeps)."
    PLOT_COLUMNS[name] = (column, "channel_uses")
    PLOTS.register(name)(draw)
    return draw


_vs_rate("accuracy_vs_rate", "accuracy", "Classification accuracy")
_vs_rate("psnr_vs_rate", "psnr_db", "PSNR [dB]")


def plot_function(name: str, scenario: dict):
    """The drawing function of plot ``name``, or None.

    Besides the registered plots, ``<metric>_vs_<option>`` (e.g. ``accuracy_vs_tau``,
    ``psnr_vs_snr_train_db``) draws a registered metric against a scheme option that the
    scenario's schemes set to different values, one line per test SNR (at most three).
    """
    if name in PLOTS:
        return PLOTS.get(name)
    found = option_plot(name, scenario)
    if found is None:
        return None
    from linksim.metrics import get_metric

    column = get_metric(found[0]).column
    draw = lambda df, scen, run_dir: _draw_vs_option(df, scen, run_dir, name, column, found[1])  # noqa: E731
    draw.columns = (column, "scheme_type")
    return draw


def _draw_vs_option(df: pd.DataFrame, scenario: dict, run_dir: Path, name: str, column: str, option: str):
    if column not in df.columns:
        return None
    df, chain = _first_chain(df, scenario)  # a channel sweep: the first chain
    values = {s.get("label"): s[option] for s in scenario.get("schemes", []) if option in s}
    d = df[df["scheme"].isin(values)].copy()
    d = d[d[column].notna()]
    if d.empty:
        return None
    d["_x"] = d["scheme"].map(lambda lab: float(values[lab]) if not isinstance(values[lab], list)
                              else float(np.mean(values[lab])))
    pick = _low_mid_high(sorted(d["snr_db"].dropna().unique()))
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    types = d.groupby("scheme_type", sort=False)
    for j, (stype, g_type) in enumerate(types):
        for i, snr in enumerate(pick):
            g = g_type[g_type["snr_db"] == snr].sort_values("_x")
            tag = f" ({stype})" if len(types) > 1 else ""
            ax.plot(g["_x"], g[column], marker=_MARKERS[(i + 3 * j) % len(_MARKERS)],
                    label=f"SNR {snr:g} dB{tag}")
    _reference_line(ax, _split_reference(df)[1], column)
    path = run_dir / f"{name}.png"
    _finish(fig, ax, f"{scenario.get('name', '')}: {column} vs {option}" + (f" ({chain})" if chain else "")
            + f"\n{_rate_note(scenario, df)}",
            option, column, path)
    return path


@PLOTS.register("table")
def write_table(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
    """The results as a table per SNR point: ``table.csv`` and ``table.md`` (Markdown)."""
    cols = [c for c in ("accuracy", "f1", "psnr_db", "ssim", "ms_ssim", "lpips", "lpips_vgg", "hash_cos",
                        "hash_hamming", "hash_hamming_norm", "retrieval_map", "bpp", "channel_uses",
                        "ber", "bler", "decode_failures") if c in df.columns and df[c].notna().any()]
    ch = scenario.get("channel") or {}
    chain_cols = [c for c in variant_columns(ch) if c in df.columns] if isinstance(ch, dict) and is_sweep(ch) else []
    keep = ["scheme", "snr_db"] + (["channel_uses"] if "channel_uses" in df.columns
                                   and df["channel_uses"].nunique() > 1 else []) + chain_cols
    cols = [c for c in cols if c not in keep]
    table = df[keep + cols]
    cols = [c for c in keep if c not in ("scheme", "snr_db")] + cols  # the Markdown shows rate and chain too
    table.to_csv(run_dir / "table.csv", index=False)
    lines = [f"# {scenario.get('name', '')}", ""]
    if scenario.get("description"):
        lines += [scenario["description"], ""]
    for snr, g in table.groupby(table["snr_db"].fillna(-1e9), sort=True):
        title = REFERENCE if snr == -1e9 else f"SNR {snr:g} dB"
        lines += [f"## {title}", "", "| " + " | ".join(["scheme"] + cols) + " |",
                  "|" + "---|" * (len(cols) + 1)]
        for _, r in g.iterrows():
            cells = []
            for c in cols:
                v = r[c]
                cells.append("" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)))
            lines.append("| " + " | ".join([str(r["scheme"])] + cells) + " |")
        lines.append("")
    path = run_dir / "table.md"
    path.write_text("\n".join(lines))
    return path


@PLOTS.register("examples")
def draw_examples(df: pd.DataFrame, scenario: dict, run_dir: Path) -> Path | None:
    """A grid of example images: the originals and each scheme at low, middle and high SNR."""
    ex = run_dir / "examples"
    if not (ex / "original.npy").exists():
        return None
    orig = np.load(ex / "original.npy")
    df, _ = _split_reference(df)
    points = _example_points(df)
    if not points:
        return None
    pick = [points[i] for i in sorted({0, len(points) // 2, len(points) - 1})]
    schemes = list(dict.fromkeys(df["scheme"]))
    n_img = len(orig)
    rows = 1 + len(schemes) * len(pick)
    fig, axes = plt.subplots(rows, n_img, figsize=(1.3 * n_img + 1.8, 1.3 * rows), squeeze=False)

    def show(ax, img):
        ax.imshow(np.clip(img.squeeze(), 0, 1), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for j in range(n_img):
        show(axes[0, j], orig[j])
    axes[0, 0].set_ylabel("original", fontsize=7, rotation=0, ha="right", va="center")
    r = 1
    for s in schemes:
        for point in pick:
            f = example_path(run_dir, s, point)
            imgs = np.load(f) if f.exists() else None
            for j in range(n_img):
                if imgs is not None and j < len(imgs):
                    show(axes[r, j], imgs[j])
                else:
                    axes[r, j].axis("off")
            axes[r, 0].set_ylabel(f"{s}\n{_point_label(point)} dB", fontsize=7, rotation=0, ha="right", va="center")
            r += 1
    ch = scenario.get("channel") or {}
    chain = _chains(df, scenario)[0][0] if isinstance(ch, dict) and is_sweep(ch) else ""
    fig.suptitle(f"{scenario.get('name', '')}: example reconstructions" + (f" ({chain})" if chain else ""),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (1.3 * rows)))  # keep the title above the first row
    path = run_dir / "examples.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _explicit(v) -> bool:
    return str(v).strip().lower() == "true"


def _example_points(df: pd.DataFrame) -> list[dict]:
    """The distinct SNR points of the results, ordered by ``snr_db`` (then the per-hop SNRs)."""
    d = df[df["snr_db"].notna()]
    if d.empty:
        return []
    cols = [c for c in ("snr_db", "hop_snr_db", "snr_explicit_per_hop") if c in d.columns]
    points = [dict(zip(cols, vals)) for vals in d[cols].itertuples(index=False, name=None)]
    unique = {}
    for p in points:
        explicit = _explicit(p.get("snr_explicit_per_hop", False))
        key = (float(p["snr_db"]), str(p.get("hop_snr_db")) if explicit else "")
        unique.setdefault(key, {"snr_db": float(p["snr_db"]), "hop_snr_db": p.get("hop_snr_db"),
                                "snr_explicit_per_hop": explicit})
    return [unique[k] for k in sorted(unique)]


def _point_label(point: dict) -> str:
    return str(point["hop_snr_db"]) if point["snr_explicit_per_hop"] else f"{point['snr_db']:g}"


def draw_plots(run_dir, names: list[str] | None = None) -> list[Path]:
    """Draw the scenario's plots from the saved results of ``run_dir``.

    Parameters
    ----------
    run_dir : path
        A run directory with ``results.csv`` and ``scenario.yaml``.
    names : list of str, optional
        Plot names; default the scenario's ``plots`` list (a plot whose columns
        the results lack is then left out; named here, it is an error).

    Output
    ------
    list of the PNG paths written.

    Raises
    ------
    RunError
        ``run_dir`` is not a folder or has no ``results.csv``; the results hold no
        rows, lack ``scheme`` or ``snr_db``, or lack the columns of a plot named in
        ``names`` (the message names the missing columns); ``scenario.yaml`` is not
        YAML; a plot name is unknown (the message lists the allowed names).  Damaged
        rows of ``results.csv`` are left out with a warning.
    """
    import warnings

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder (give a run directory, e.g. runs/<scenario name>)")
    res = run_dir / "results.csv"
    if not res.exists() and not res.is_symlink():
        raise RunError(f"{run_dir} has no results.csv (is it a linksim run directory? a run writes it after its "
                       "first point)")
    df, problems = read_results(res)
    if problems:
        warnings.warn(f"{res}: left out {len(problems)} damaged row(s) ({'; '.join(problems[:5])})", stacklevel=2)
    if df.empty and problems:
        raise RunError(f"{res}: all {len(problems)} row(s) are damaged ({'; '.join(problems[:3])}); nothing to plot")
    if df.empty:
        raise RunError(f"{res} holds no results rows (the run computed no point yet); nothing to plot")
    scen_file = run_dir / "scenario.yaml"
    try:
        scenario = yaml.safe_load(scen_file.read_text()) if scen_file.exists() else {}
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RunError(f"{scen_file}: cannot be read as YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(scenario, dict):
        raise RunError(f"{scen_file} is not a scenario (a mapping of fields); is it a linksim run directory?")
    if not isinstance(scenario.get("plots", []), list) or not all(isinstance(n, str) for n in scenario.get("plots", [])):
        raise RunError(f"{scen_file}: plots must be a list of plot names (got {scenario.get('plots')!r})")
    asked = bool(names)
    names = names or scenario.get("plots") or PLOTS.names()
    plots = []
    for n in names:
        fn = plot_function(n, scenario) if isinstance(n, str) else None
        if fn is None:
            raise RunError(f"unknown plot {n!r} (allowed: {', '.join(PLOTS.names())}, or "
                           f"<metric>_vs_<scheme option> such as accuracy_vs_tau)")
        plots.append((n, fn))
    foreign = not RunDirectory(run_dir).owned()
    if foreign:
        _refuse_foreign_outputs(run_dir, [n for n, _ in plots])
    written, skipped = [], []
    for n, fn in plots:
        need = PLOT_COLUMNS.get(n) or getattr(fn, "columns", ())
        missing = [c for c in need if c not in df.columns]
        if missing:
            if asked:
                raise RunError(f"{res} lacks the column(s) {', '.join(missing)} that plot {n!r} draws (it has "
                               f"{', '.join(df.columns)})")
            skipped.append(f"{n} (needs {', '.join(missing)})")
            continue
        try:
            p = fn(df, scenario, run_dir)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RunError(f"plot {n!r} cannot be drawn from {res} ({type(exc).__name__}: {exc}); are the "
                           "results complete?") from exc
        except OSError as exc:
            raise RunError(f"plot {n!r} cannot be written: {exc.filename or run_dir}: {exc.strerror or exc}") from None
        if p is not None:
            written.append(p)
        elif asked:
            raise RunError(f"plot {n!r} has nothing to draw in {run_dir}"
                           + (" (no example images: the run saves them when evaluation.example_images > 0)"
                              if n == "examples" else ""))
    if not written and skipped:
        raise RunError(f"no plot can be drawn from {res}: " + "; ".join(skipped) + f" (it has {', '.join(df.columns)})")
    if foreign:
        _record_outputs(run_dir, written)
    return written


#: In a folder linksim did not make, the files ``linksim plot`` wrote there (so it may redraw them).
PLOT_MANIFEST = ".linksim-plots.json"


def _outputs_of(names) -> list[str]:
    out = [f"{n}.png" for n in names]
    return out + (["table.csv", "table.md"] if "table" in names else [])


def _plot_manifest(run_dir: Path) -> set:
    """The files ``linksim plot`` wrote in a folder linksim did not make (:data:`PLOT_MANIFEST`)."""
    import json

    try:
        return set(json.loads((run_dir / PLOT_MANIFEST).read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def _refuse_foreign_outputs(run_dir: Path, names) -> None:
    """In a folder linksim did not make, never overwrite a file ``linksim plot`` did not write there."""
    ours = _plot_manifest(run_dir)
    clash = [f for f in _outputs_of(names) if (run_dir / f).exists() and f not in ours]
    if clash:
        raise RunError(f"{run_dir} was not made by linksim and already holds {', '.join(clash)}; linksim plot "
                       "never overwrites files it did not write. Move them away, or copy results.csv (and "
                       "scenario.yaml) to a new folder and plot there")


def _record_outputs(run_dir: Path, written) -> None:
    import json

    names = {Path(p).name for p in written}
    if "table.md" in names:
        names.add("table.csv")  # the table plot writes both, returns the Markdown one
    (run_dir / PLOT_MANIFEST).write_text(json.dumps(sorted(_plot_manifest(run_dir) | names)))
