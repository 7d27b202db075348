"""`results/perf.png`: CPU time per pair vs width per spec (peers dashed), and the autoencoder vs signed
matching."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COLOURS = {"git-rebasin": "C0", "rebasin (PyPI)": "C0", "sign-rebasin": "C1", "sinkhorn-l2": "C2",
           "sinkhorn-rebasin l2 (PyPI)": "C2", "sinkhorn-mid": "C3", "sinkhorn-rebasin mid (PyPI)": "C3",
           "c2m3": "C4", "scalegmn-ae (encode+decode)": "C5", "sign-rebasin (signed matching)": "C1"}


def perf_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """CPU time per pair vs width, one panel per spec (a peer dashed, in the colour of the method it is
    compared with), and the autoencoder per network vs signed matching per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    align = table[table.group == "align"] if "group" in table else table.iloc[:0]
    panels = [((s, d), align[(align.spec == s) & (align.depth == d)])
              for s, d in align[["spec", "depth"]].drop_duplicates().itertuples(index=False)] if len(align) else []
    ae = table[table.group == "autoencoder"] if "group" in table else table.iloc[:0]
    if len(ae):
        panels.append((("autoencoder", None), ae))
    if not panels:
        return None
    cols = min(2, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.2 * cols, 4.4 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, ((spec, depth), rows) in zip(axes.flat, panels, strict=False):
        for case, sub in rows.groupby("case", sort=False):
            sub = sub.sort_values("width")
            scale = sub.per_item_s / sub.median_s  # per item: the AE's times are per network
            ax.errorbar(sub.width, sub.per_item_s, yerr=[(sub.median_s - sub.min_s) * scale,
                                                         (sub.max_s - sub.median_s) * scale],
                        label=case, marker="o", ms=3, ls="--" if "PyPI" in case else "-", capsize=2,
                        color=COLOURS.get(case))
        widths = sorted(int(w) for w in rows.width.unique())
        title = (f"{spec}, depth {int(depth)}: CPU s per pair" if depth is not None
                 else "autoencoder per network vs signed matching per pair (SIREN)")
        ax.set(xscale="log", yscale="log", xlabel="width", ylabel="CPU seconds", title=title)
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("bench perf: one thread, median of interleaved repetitions (bars: min-max); peers dashed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
