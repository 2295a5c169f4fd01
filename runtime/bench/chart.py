"""The benchmark chart: latency per candidate with its spread, and the speed-up over eager fp32.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch, no
display needed), at a fixed pixel size so that every chart of a series compares at a glance.
Whiskers run from the fastest run (min) to p90: the min is what the hardware can do, p90 the
tail a server sees; both are in every committed result, so old results re-render the same way.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import BenchResult

WIDTH_PX, HEIGHT_PX, DPI = 1400, 900, 100
# a log axis once the largest value (latency, speed-up) is this many times the smallest
LOG_RATIO = 20.0


def render_png(result: BenchResult, title: str = "irdeploy bench", width_px: int = WIDTH_PX,
               height_px: int = HEIGHT_PX, dpi: int = DPI) -> bytes:
    """PNG bytes of the chart of ``result``, exactly ``width_px`` x ``height_px`` pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = result.rows
    groups = list(dict.fromkeys((r.model, r.shape_text, r.threads) for r in rows))
    labels = list(dict.fromkeys(f"{r.backend} {r.precision}" for r in rows))
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    latency, speedup = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    fig.subplots_adjust(left=0.07, right=0.80, top=0.92, bottom=0.16, hspace=0.08)
    fig.suptitle(title)
    palette = [f"C{i % 10}" for i in range(len(labels))]
    width = 0.8 / max(len(labels), 1)
    medians = [r.stats.median for r in rows if r.stats is not None]
    speedups = [r.speedup_vs_eager for r in rows if r.speedup_vs_eager]
    for r in rows:
        g = groups.index((r.model, r.shape_text, r.threads))
        j = labels.index(f"{r.backend} {r.precision}")
        x = g - 0.4 + width * (j + 0.5)
        if r.stats is None:  # skipped: said on the chart, not left as a silent gap
            latency.text(x, 0.01, "skipped", rotation=90, ha="center", va="bottom", fontsize=7, color="0.4",
                         transform=latency.get_xaxis_transform())
            continue
        s = r.stats
        latency.bar(x, s.median, width, color=palette[j],
                    yerr=[[s.median - s.min], [s.p90 - s.median]], capsize=2, ecolor="0.2")
        if r.speedup_vs_eager is not None:
            speedup.bar(x, r.speedup_vs_eager, width, color=palette[j])
            speedup.text(x, r.speedup_vs_eager, f"{r.speedup_vs_eager:.2f}", ha="center", va="bottom", fontsize=7)
    for axes, values in ((latency, medians), (speedup, speedups)):
        if values and max(values) / max(min(values), 1e-9) > LOG_RATIO:
            axes.set_yscale("log")
    latency.set_ylabel("latency ms (median; whiskers min to p90)")
    latency.grid(axis="y", alpha=0.3)
    speedup.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    speedup.set_ylabel("speed-up vs eager fp32")
    speedup.grid(axis="y", alpha=0.3)
    speedup.set_xticks(range(len(groups)))
    speedup.set_xticklabels([f"{m}\n{shape}" + (f"\n{t} thread{'s' if t > 1 else ''}" if t else "")
                             for m, shape, t in groups], fontsize=8)
    speedup.set_xlim(-0.5, max(len(groups), 1) - 0.5)
    if not medians:
        latency.text(0.5, 0.5, "no measured rows", ha="center", va="center", transform=latency.transAxes)
    handles = [Patch(color=palette[j], label=label) for j, label in enumerate(labels)]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.81, 0.5), fontsize=9, title="backend precision")
    fig.text(0.07, 0.02, result.machine_line()[:220], fontsize=7, color="0.3")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
