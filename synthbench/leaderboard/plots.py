"""The leaderboard's figures, drawn from records' ``details`` only (matplotlib, Agg).

Each ``*_figure`` function takes plain data out of a record (or the mean over a
row's seeds) and an output path, and returns the path it wrote, or None when the
data is not there or not in the expected shape: a third-party protocol's
``details`` may use the same key for something else, and a figure that cannot be
drawn is left out rather than failing the site. Line and bar charts are SVG
(sharp at any zoom); heat maps, image grids and scatter plots are PNG (small).

Figures use ``matplotlib.figure.Figure`` directly (no pyplot), so no global
state or GUI backend is involved, and SVG output is made reproducible (no date,
fixed hash salt).
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

import numpy as np  # noqa: E402

X_KEYS = ("multiples", "t_re", "fractions", "x", "steps", "epochs", "sizes")
"""Curve keys read as the x axis when a ``curve`` holds one of them."""
STYLE = {"svg.hashsalt": "synthbench", "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9,
         "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False}
REAL_COLOR = "#444444"


def styled(draw: Callable[..., Path | None]) -> Callable[..., Path | None]:
    """Run a figure function under the leaderboard's style (rcParams are read when
    artists are created, so the whole function runs inside the context)."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Path | None:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper


def natural_key(text: Any) -> list:
    """``t30`` before ``t100``, ``x2`` before ``x2.5`` before ``x10``, ``x1.25``
    before ``x1.5``: records store mappings with sorted keys, so figures put steps
    and (fractional) multiples back in numeric order."""
    return [(0, float(part), "") if part[0].isdigit() else (1, 0.0, part)
            for part in re.split(r"(\d+(?:\.\d+)?)", str(text)) if part]


def _natural(mapping: dict) -> dict:
    return {k: mapping[k] for k in sorted(mapping, key=natural_key)}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".svg":
        fig.savefig(path, format="svg", metadata={"Date": None})
    else:
        fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return path


def _short(label: str, limit: int = 32) -> str:
    """Labels inside figures stay short (full names are in the tables)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values: Any) -> list[float] | None:
    """A list of numbers (None/NaN kept as NaN), or None when it is not one."""
    if not isinstance(values, (list, tuple)) or not values or not all(v is None or _is_number(v) for v in values):
        return None
    return [math.nan if v is None else float(v) for v in values]


def _floats(values: Any) -> np.ndarray | None:
    """``values`` as a float64 array, or None when they are not a (regular) array of numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def _matrix(values: Any) -> np.ndarray | None:
    arr = _floats(values)
    return arr if arr is not None and arr.ndim == 2 and arr.size and arr.shape[0] == arr.shape[1] else None


def _images(values: Any) -> np.ndarray | None:
    """``[N, C, H, W]`` or ``[N, H, W]`` uint8-range images as ``[N, H, W, C]`` floats in [0, 1]."""
    arr = _floats(values)
    if arr is None:
        return None
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or not arr.size:
        return None
    scale = 255.0 if arr.max() > 1.0 else 1.0
    return np.clip(arr.transpose(0, 2, 3, 1) / scale, 0.0, 1.0)


def _show(ax, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set(xticks=[], yticks=[])


def mean_of(values: Sequence[Any]) -> Any:
    """Element-wise mean of equally shaped numbers / lists / dicts of them (the
    seeds of one row); the first value where shapes differ."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):
        if all(isinstance(v, dict) and v.keys() == first.keys() for v in values):
            return {k: mean_of([v[k] for v in values]) for k in first}
        return first
    if isinstance(first, (list, tuple)):
        if all(isinstance(v, (list, tuple)) and len(v) == len(first) for v in values):
            return [mean_of([v[i] for v in values]) for i in range(len(first))]
        return first
    if not all(_is_number(v) for v in values):
        return first
    finite = [float(v) for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def sum_of(values: Sequence[Any]) -> Any:
    """Element-wise sum (confusion matrices over seeds); the first where shapes differ."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    first = values[0]
    if isinstance(first, dict):
        if all(isinstance(v, dict) and v.keys() == first.keys() for v in values):
            return {k: sum_of([v[k] for v in values]) for k in first}
        return first
    arrays = [_floats(v) for v in values]
    if any(a is None or a.shape != arrays[0].shape for a in arrays):
        return first
    return np.sum(arrays, axis=0).tolist()


def _entries(data: Any, parse: Callable[[Any], Any]) -> dict[str, Any]:
    """``parse`` of ``data``, or of each value of a mapping (keys in natural order),
    keeping what parses (not None)."""
    parsed = {str(k): parse(v) for k, v in _natural(data).items()} if isinstance(data, dict) else {"": parse(data)}
    return {k: v for k, v in parsed.items() if v is not None}


def _grid(n: int, max_cols: int, width: float, height: float, **kw: Any) -> tuple[Figure, np.ndarray]:
    """A figure of ``n`` panels of ``width`` x ``height``, at most ``max_cols`` a row
    (``kw`` for ``subplots``): the figure and its axes, flat, the spare ones hidden."""
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig = _figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False, **kw).flatten()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


# --------------------------------------------------------------------------- curves


def split_curve(curve: Any) -> tuple[str, list[float], dict[str, list[float]], dict[str, float]] | None:
    """A ``curve`` mapping -> (x name, x values, series, scalar reference lines).

    x is the first of :data:`X_KEYS` present (else the index); series are the
    other numeric lists of x's length; scalars (e.g. ``real_top1``) become
    horizontal reference lines on the series they name."""
    if not isinstance(curve, dict):
        return None
    xname = next((k for k in X_KEYS if _numbers(curve.get(k))), None)
    lists = {k: _numbers(v) for k, v in curve.items() if k != xname}
    lists = {k: v for k, v in lists.items() if v is not None}
    if xname is None and not lists:
        return None
    x = _numbers(curve[xname]) if xname else list(range(len(next(iter(lists.values())))))
    series = {k: v for k, v in lists.items() if len(v) == len(x) and any(math.isfinite(y) for y in v)}
    scalars = {k: float(v) for k, v in curve.items() if _is_number(v) and math.isfinite(v)}
    if not series:
        return None
    return xname or "index", x, series, scalars


def _reference_for(series: str, scalars: dict[str, float]) -> tuple[str, float] | None:
    for name, value in scalars.items():
        if name == f"real_{series}" or name == f"{series}_real" or (name.startswith("real") and series in name):
            return name, value
    return None


@styled
def _band(curves: Sequence[Any], name: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and 95% half-width (Student's t over seeds) of series ``name`` at each
    of ``n`` points, from the seeds' curves; None with fewer than two seeds."""
    rows = []
    for c in curves:
        parsed = split_curve(c)
        if parsed is not None and name in parsed[2] and len(parsed[2][name]) == n:
            rows.append(parsed[2][name])
    if len(rows) < 2:
        return None
    from scipy.stats import t

    a = np.asarray(rows, dtype=np.float64)
    half = t.ppf(0.975, len(rows) - 1) * a.std(axis=0, ddof=1) / math.sqrt(len(rows))
    return a.mean(axis=0), half


def curves_figure(lines: dict[str, Any], path: Path, title: str = "", order: Sequence[str] = (),
                  spread: dict[str, Sequence[Any]] | None = None) -> Path | None:
    """Small multiples, one panel per series of the curves; one line per entry of
    ``lines`` (a generator, or a single row), the scalar reference (``real_top1``
    beside ``top1``) dashed: the scale-up curve against the real line, the t_re
    curves of accuracy, entropy and FID. ``order``: metric names whose prefixes
    order the panels. ``spread``: each line's per-seed curves, drawn as a 95%
    band around it."""
    parsed = {label: split_curve(c) for label, c in lines.items()}
    parsed = {label: p for label, p in parsed.items() if p is not None}
    if not parsed:
        return None
    names: list[str] = []
    for _, _, series, _ in parsed.values():
        names += [s for s in series if s not in names]
    # Panels in the order of the table's metrics (``top1`` before ``coverage``).
    rank = {n: next((i for i, m in enumerate(order) if m == n or m.startswith(f"{n}_")), len(order)) for n in names}
    names.sort(key=lambda n: rank[n])
    fig, axes = _grid(len(names), 3, 3.2, 2.4)
    drawn_refs: set[tuple[str, str]] = set()
    for ax, name in zip(axes, names):
        for label, (xname, x, series, scalars) in parsed.items():
            if name in series:
                (line,) = ax.plot(x, series[name], marker="o", ms=3, lw=1.4, label=_short(label),
                                  color=REAL_COLOR if label == "real" else None)
                band = _band((spread or {}).get(label, ()), name, len(x))
                if band is not None:
                    ax.fill_between(x, band[0] - band[1], band[0] + band[1], color=line.get_color(), alpha=0.18,
                                    linewidth=0)
            ref = _reference_for(name, scalars)
            if ref and (name, ref[0]) not in drawn_refs:
                drawn_refs.add((name, ref[0]))
                ax.axhline(ref[1], ls="--", lw=1, color=REAL_COLOR, label=f"{ref[0]} = {ref[1]:.4g}")
            ax.set_xlabel(xname)
            if xname == "multiples":
                ax.set_xscale("log")
                ax.set_xticks(x, [f"x{v:g}" for v in x])
                ax.minorticks_off()
        ax.set_title(name)
        ax.grid(alpha=0.3)
    if len(axes[0].get_legend_handles_labels()[1]) > 1:
        axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- bars


@styled
def per_class_figure(per_class: Any, path: Path, title: str = "per-class accuracy") -> Path | None:
    """Grouped bars of per-class accuracy: one list, or one list per arm/step
    (``{"x1": [...], "x10": [...]}``)."""
    groups = _entries(per_class, _numbers)
    if not groups:
        return None
    n = max(len(v) for v in groups.values())
    fig = _figure(max(4.0, 0.45 * n * max(1, len(groups)) ** 0.5 + 1.5), 2.6)
    ax = fig.subplots()
    width = 0.8 / len(groups)
    for i, (name, vals) in enumerate(groups.items()):
        ax.bar(np.arange(len(vals)) + (i - (len(groups) - 1) / 2) * width, vals, width=width, label=name or None)
    ax.set(xticks=np.arange(n), xlabel="class", ylabel="accuracy", ylim=(0, 1.05), title=title)
    ax.grid(axis="y", alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


PER_CLASS_FIDELITY = ("fid", "precision", "recall", "density", "coverage")


@styled
def per_class_fidelity_figure(space: Any, path: Path) -> Path | None:
    """One panel per ``fidelity`` metric, bars per class: the generator's
    samples against the real train split, beside the floor (real test split vs
    real train) in grey, so a class the generator misses stands out against
    what a fresh real sample of the same size scores. ``space`` is one feature
    space's ``details`` (``per_class`` and ``floor_per_class``: metric -> list)."""
    if not isinstance(space, dict) or not isinstance(space.get("per_class"), dict):
        return None
    synth = space["per_class"]
    floor = space.get("floor_per_class") if isinstance(space.get("floor_per_class"), dict) else {}
    panels = [(m, _numbers(synth.get(m)), _numbers(floor.get(m))) for m in PER_CLASS_FIDELITY]
    panels = [(m, s, f) for m, s, f in panels if s is not None]
    if not panels:
        return None
    n = max(len(s) for _, s, _ in panels)
    fig = _figure(max(8.0, 0.6 * n + 2.5), 2.1 * len(panels) + 0.5)  # legible at page width
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    x = np.arange(n)
    for ax, (name, s, f) in zip(axes, panels):
        ax.bar(x[:len(s)] - (0.2 if f else 0), s, width=0.4 if f else 0.8, color="#3b75af", label="samples")
        if f is not None:
            ax.bar(x[:len(f)] + 0.2, f, width=0.4, color=REAL_COLOR, alpha=0.6, label="floor (real test)")
        ax.set_ylabel(name + (" (lower better)" if name == "fid" else ""), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set(xticks=x, xlabel="class")
    return _save(fig, path)


@styled
def interval_bars_figure(entries: list[tuple[str, float, float | None, bool]], path: Path, metric: str,
                         reading: str = "") -> Path | None:
    """The headline per row, mean with its 95% interval; the oracle row in grey.
    Points with whiskers on an axis fitted to the intervals, not bars from 0:
    0.98 and 0.99 must not look equal."""
    entries = [e for e in entries if e[1] is not None and math.isfinite(e[1])]
    if not entries:
        return None
    fig = _figure(max(3.8, 0.8 * len(entries) + 1.5), 2.8)
    ax = fig.subplots()
    x = np.arange(len(entries))
    errs = [h if h is not None and math.isfinite(h) else 0.0 for _, _, h, _ in entries]
    for i, (_, m, _, oracle) in enumerate(entries):
        ax.errorbar([i], [m], yerr=[errs[i]], fmt="s" if oracle else "o", ms=6, capsize=4, lw=1.4,
                    color=REAL_COLOR if oracle else "#3b75af")
    lo = min(m - e for (_, m, _, _), e in zip(entries, errs))
    hi = max(m + e for (_, m, _, _), e in zip(entries, errs))
    pad = max((hi - lo) * 0.15, abs(hi) * 1e-3, 1e-6)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.set_xticks(x, [_short(label) for label, *_ in entries], rotation=20 if len(entries) > 4 else 0, ha="right"
                  if len(entries) > 4 else "center")
    arrow = f" ({reading})" if reading else ""
    ax.set_title(f"{_short(metric, 40)}\nmean ± 95% interval{arrow}")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@styled
def corruption_figure(per_corruption: Any, severities: Any, path: Path) -> Path | None:
    """Accuracy against severity, one panel per corruption, one line per arm."""
    if not isinstance(per_corruption, dict) or not per_corruption:
        return None
    arms = {arm: table for arm, table in per_corruption.items() if isinstance(table, dict)}
    kinds: list[str] = []
    for table in arms.values():
        kinds += [k for k in table if k not in kinds and _numbers(table[k])]
    if not kinds:
        return None
    fig, axes = _grid(len(kinds), 4, 2.5, 2.0, sharey=True)
    for ax, kind in zip(axes, kinds):
        for arm, table in arms.items():
            ys = _numbers(table.get(kind))
            if ys is None:
                continue
            xs = _numbers(severities) if _numbers(severities) and len(severities) == len(ys) else range(1, len(ys) + 1)
            ax.plot(list(xs), ys, marker="o", ms=3, label=arm, color=REAL_COLOR if arm == "real" else None)
        ax.set(title=kind, xlabel="severity")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    return _save(fig, path)


# --------------------------------------------------------------------------- heat maps and images


@styled
def confusion_figure(confusion: Any, path: Path) -> Path | None:
    """Row-normalised confusion matrix (true class down, predicted across), or one
    per arm when the record holds a mapping of them."""
    mats = _entries(confusion, _matrix)
    if not mats:
        return None
    fig, axes = _grid(len(mats), 4, 3.0, 2.9)
    for ax, (name, m) in zip(axes, mats.items()):
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-12)
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        n = m.shape[0]
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    if m[i, j]:
                        ax.text(j, i, f"{m[i, j]:g}", ha="center", va="center", fontsize=6,
                                color="white" if norm[i, j] > 0.5 else "black")
        ticks = np.arange(n) if n <= 20 else np.arange(0, n, max(1, n // 10))
        ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true", title=name or "confusion matrix")
    fig.colorbar(im, ax=axes[: len(mats)].tolist(), shrink=0.8)
    return _save(fig, path)


def pca_sets(pca: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """Point sets ``[N, 2]`` in a ``pca`` mapping (nested ones named ``a/b``) and
    their labels (``<name>_labels``, or a shared ``labels`` of the same length)."""
    if not isinstance(pca, dict):
        return None
    sets: dict[str, np.ndarray] = {}

    def walk(prefix: str, obj: dict) -> None:
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}/", value)
                continue
            arr = _floats(value)
            if arr is not None and arr.ndim == 2 and arr.shape[1] == 2 and len(arr):
                sets[name] = arr

    walk("", pca)
    sets = _natural(sets)
    if not sets:
        return None
    labels: dict[str, np.ndarray] = {}
    shared = pca.get("labels")
    for name, pts in sets.items():
        lab = pca.get(f"{name.split('/')[0]}_labels", shared)
        if isinstance(lab, list) and len(lab) == len(pts):
            labels[name] = np.asarray(lab)
    return sets, labels


@styled
def pca_figure(pca: Any, path: Path) -> Path | None:
    """The 2-D PCA scatter: the real points in grey under each other set (synthetic,
    or reconstructions at each t_re), coloured by class."""
    parsed = pca_sets(pca)
    if parsed is None:
        return None
    sets, labels = parsed
    ref = "real" if "real" in sets else None
    others = [n for n in sets if n != ref] or [ref]
    fig, axes = _grid(len(others), 3, 3.0, 2.8)
    for ax, name in zip(axes, others):
        if ref is not None and name != ref:
            ax.scatter(*sets[ref].T, s=4, c="#bbbbbb", label="real", linewidths=0)
        pts = sets[name]
        if name in labels:
            ax.scatter(*pts.T, s=5, c=labels[name], cmap="tab10", vmin=0, vmax=9, linewidths=0, label=name)
        else:
            ax.scatter(*pts.T, s=5, linewidths=0, label=name)
        ax.set_title(name if name == ref else f"{name} over real (grey)" if ref else name)
        ax.set(xticks=[], yticks=[])
    classes = sorted({int(c) for name in others if name in labels for c in np.asarray(labels[name]).ravel()})
    if classes and max(classes) <= 9:  # which colour is which class (tab10 has ten)
        from matplotlib.lines import Line2D

        cmap = matplotlib.colormaps["tab10"]
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=cmap(c), label=str(c)) for c in classes]
        fig.legend(handles=handles, title="class", fontsize=7, title_fontsize=7, frameon=False,
                   loc="outside right center")  # constrained layout makes room for it
    return _save(fig, path)


@styled
def gradcam_figure(gradcam: Any, path: Path) -> Path | None:
    """Grad-CAM maps of the fixed test images (one per class), one row per
    classifier (e.g. per t_re), so attention can be compared at a glance."""
    if not isinstance(gradcam, dict):
        return None
    entries = ({"": gradcam} if "maps" in gradcam
               else {str(k): v for k, v in _natural(gradcam).items() if isinstance(v, dict) and "maps" in v})
    rows_data = []
    for name, entry in entries.items():
        maps = np.asarray(entry["maps"], dtype=np.float64)
        if maps.ndim != 3 or not len(maps):
            continue
        rows_data.append((name, maps, entry.get("labels") or list(range(len(maps)))))
    if not rows_data:
        return None
    cols = max(len(m) for _, m, _ in rows_data)
    fig = _figure(0.75 * cols + 0.8, 0.8 * len(rows_data) + 0.5)
    axes = fig.subplots(len(rows_data), cols, squeeze=False)
    for r, (name, maps, labels) in enumerate(rows_data):
        for c in range(cols):
            ax = axes[r, c]
            ax.set(xticks=[], yticks=[])
            if c >= len(maps):
                ax.set_visible(False)
                continue
            ax.imshow(maps[c], cmap="inferno", vmin=0, vmax=1, interpolation="bilinear")
            if r == 0:
                ax.set_title(f"class {labels[c]}" if c < len(labels) else "", fontsize=7)
        if name:
            axes[r, 0].set_ylabel(name, fontsize=8)
    return _save(fig, path)


@styled
def pairs_figure(pairs: Any, path: Path, other: str = "member") -> Path | None:
    """The closest pairs of a copy check: synthetic on top, its nearest real
    image below (``other``: a training ``member`` or a ``test`` image), the
    distance between them."""
    if not isinstance(pairs, list) or not pairs:
        return None
    good = []
    for p in pairs:
        # Not a dict, or a side missing (None in a list of images does not parse): left out.
        imgs = _images([p.get("synthetic"), p.get(other)]) if isinstance(p, dict) else None
        if imgs is not None:
            good.append((imgs, p.get("distance"), p.get("label")))
    if not good:
        return None
    fig = _figure(0.95 * len(good) + 0.6, 2.3)
    axes = fig.subplots(2, len(good), squeeze=False)
    for c, (imgs, dist, label) in enumerate(good):
        _show(axes[0, c], imgs[0])
        _show(axes[1, c], imgs[1])
        d = f"d={dist:.3g}" if isinstance(dist, (int, float)) else ""
        axes[0, c].set_title(f"{d}\nclass {label}" if label is not None else d, fontsize=7)
    axes[0, 0].set_ylabel("synthetic", fontsize=8)
    axes[1, 0].set_ylabel(other, fontsize=8)
    return _save(fig, path)


@styled
def tradeoff_figure(points: list[tuple[str, float, float, bool]], path: Path, xlabel: str,
                    ylabel: str) -> Path | None:
    """One point per generator (label, x, y, is the reference): privacy against
    utility, so a generator cannot look private by being useless."""
    points = [p for p in points if all(isinstance(v, (int, float)) and math.isfinite(v) for v in p[1:3])]
    if len(points) < 2:
        return None
    fig = _figure(4.6, 3.6)
    ax = fig.subplots()
    for label, x, y, ref in points:
        ax.scatter([x], [y], s=36, color=REAL_COLOR if ref else None, marker="s" if ref else "o", zorder=3)
        ax.annotate(_short(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0.5, ls="--", lw=1, color="#888")
    ax.text(ax.get_xlim()[0], 0.5, " chance (0.5)", fontsize=7, va="bottom", color="#666")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


@styled
def roc_figure(curves: Any, path: Path) -> Path | None:
    """``mia``'s ROC curves (``details["roc_curves"]``: name -> {fpr, tpr}) on
    log-log axes, where an attack's low-FPR power shows, with the chance line."""
    if not isinstance(curves, dict):
        return None
    good = {}
    for name, c in curves.items():
        if isinstance(c, dict):
            f, t = c.get("fpr"), c.get("tpr")
            if (isinstance(f, list) and isinstance(t, list) and len(f) == len(t) >= 2
                    and all(isinstance(v, (int, float)) and 0 < v <= 1 for v in f)
                    and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in t)):
                good[str(name)] = (f, t)
    if not good:
        return None
    fig = _figure(4.2, 3.6)
    ax = fig.subplots()
    lo = min(min(f) for f, _ in good.values())
    ax.plot([lo, 1], [lo, 1], ls="--", lw=1, color="#888", label="chance")
    for name, (f, t) in sorted(good.items()):
        floor = [max(v, lo / 2) for v in t]  # a TPR of 0 has no place on a log axis: drawn at the bottom edge
        ax.plot(f, floor, lw=1.4, ls="-" if name.startswith("synthetic") else ":", label=_short(name))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo / 2, 1.05)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


@styled
def samples_figure(samples: Any, path: Path, labels: Any = None) -> Path | None:
    """A grid of sample images (``details["samples"]``: ``[N, C, H, W]`` in 0..255)."""
    imgs = _images(samples)
    if imgs is None:
        return None
    fig, axes = _grid(min(len(imgs), 64), 10, 0.7, 0.75)
    for i, (ax, img) in enumerate(zip(axes, imgs[:64])):
        _show(ax, img)
        if isinstance(labels, list) and i < len(labels):
            ax.set_title(str(labels[i]), fontsize=6)
    return _save(fig, path)
