"""Figures of two-point statistics: per statistic the phase map, the S2 map and the radial curve S2(r).

Drawn with matplotlib's object API (``matplotlib.figure.Figure``): nothing here touches pyplot's
global state or the plotting backend, so a notebook keeps its own. Show a figure in a notebook by
leaving it as the cell's value, or save it with ``figure.savefig("s2.png")``.
"""

import math

import numpy as np

from .radial import radial_profile

# The S2 map's default half-width: this many decay lengths of the radial curve (at least MIN_MAP_CUTOFF).
DECAY_LENGTHS_SHOWN = 4
MIN_MAP_CUTOFF = 8


def subplots(*args, figsize=None, **kwargs):
    """(Figure, axes) like ``pyplot.subplots`` but without pyplot: no backend, no global figure list."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*args, **kwargs)


def pair_name(pair):
    """ "S00" for the auto-correlation of phase 0, "S01" for the cross-correlation of phases 0 and 1."""
    return f"S{pair[0]}{pair[1]}"


def decay_cutoff(distance, probability, asymptote, largest):
    """Half-width of an S2 map that shows structure: DECAY_LENGTHS_SHOWN decay lengths, at least MIN_MAP_CUTOFF.

    The decay length is the first distance (pixels) where |S(r) - asymptote| has fallen to 1/e of
    its value at r = 0; a curve that never gets there (or has nothing to decay) shows the largest window.
    """
    deviation = np.abs(np.asarray(probability) - asymptote)
    below = np.flatnonzero(deviation <= deviation[0] / math.e)
    if deviation[0] == 0 or below.size == 0:
        return largest
    return int(min(largest, max(MIN_MAP_CUTOFF, math.ceil(DECAY_LENGTHS_SHOWN * distance[below[0]]))))


def statistics_figure(
    labels,
    stats,
    pairs,
    *,
    volume_fractions=None,
    phase_names=None,
    voxel_size=1.0,
    unit=None,
    map_cutoff=None,
    title=None,
):
    """One row per statistic: the phase map (a slice of a volume), the S2 map and the radial curve S2(r).

    Args:
        labels: (H, W) label image or (D, H, W) volume of phases 0..n-1 (numpy).
        stats: (P, *window) statistics of ``labels`` with a centred window (2k_a + 1 per axis).
        pairs: the P phase pairs (i, j) of ``stats``.
        volume_fractions: phi of every phase (default: from ``labels``); marks phi at r = 0 and the
            asymptote phi_i phi_j of each curve.
        phase_names: a name per phase for the titles (e.g. "value 255").
        voxel_size, unit: length of a pixel and its unit for the axes (default "pixels").
        map_cutoff: half-width (pixels) of the S2 maps, an int or one per axis; None chooses
            DECAY_LENGTHS_SHOWN decay lengths of each radial curve and says so in the panel title.
        title: the figure's title.

    The radial curves use bins of one pixel, [r, r + 1), up to min(min(image shape) // 2, min k_a),
    plotted at the bin centres (PoreSpy's convention). A 3D map shows its plane r_0 = 0.

    Returns:
        matplotlib.figure.Figure
    """
    labels = np.asarray(labels)
    stats = np.asarray(stats, dtype=np.float64)
    d = labels.ndim
    if d not in (2, 3):
        raise ValueError(f"labels must be a 2D image or a 3D volume, got shape {labels.shape}")
    if stats.ndim != d + 1 or len(pairs) != stats.shape[0]:
        raise ValueError(
            f"stats must have shape (P, *window) with P = {len(pairs)} pairs and {d} window axes, got {stats.shape}"
        )
    window = tuple((n - 1) // 2 for n in stats.shape[1:])
    r_max = min(min(labels.shape) // 2, *window)
    if r_max < 1:
        raise ValueError(
            "plotting needs a window of half-width >= 1 on every axis and an image of >= 2 pixels per axis, "
            f"got half-widths {window} for an image of shape {labels.shape}"
        )
    if volume_fractions is None:
        n_phases = max(int(labels.max()) + 1, 1 + max(max(pair) for pair in pairs))
        volume_fractions = np.bincount(labels.reshape(-1), minlength=n_phases) / labels.size
    unit = unit or ("pixels" if voxel_size == 1 else "units")
    curves = radial_profile(stats, spatial_dims=d, bins=r_max, r_max=r_max, voxel_size=voxel_size)
    section = labels[labels.shape[0] // 2] if d == 3 else labels

    figure, axes = subplots(len(pairs), 3, figsize=(13.5, 3.9 * len(pairs)), squeeze=False)
    for row, (i, j) in enumerate(pairs):
        name = pair_name((i, j))
        phase_ax, map_ax, curve_ax = axes[row]
        # The phase map: phase i white (auto), or i and j in two colours (cross), the rest black.
        picture = np.zeros((*section.shape, 3))
        picture[section == i] = (1.0, 1.0, 1.0) if i == j else (0.9, 0.35, 0.2)
        if i != j:
            picture[section == j] = (0.25, 0.55, 0.95)
        phase_ax.imshow(picture, interpolation="nearest")
        label = [f"{p} ({phase_names[p]})" if phase_names is not None else str(p) for p in (i, j)]
        phases = f"phase {label[0]}" if i == j else f"phases {label[0]} in orange, {label[1]} in blue"
        where = f", slice {labels.shape[0] // 2} of axis 0" if d == 3 else ""
        phase_ax.set_title(f"{phases}{where}", fontsize=9)
        phase_ax.set_xticks([])
        phase_ax.set_yticks([])

        asymptote = volume_fractions[i] * volume_fractions[j]
        probability = curves.probability[row]
        auto_window = map_cutoff is None
        if auto_window:
            distance_px = curves.distance / voxel_size
            shown = (decay_cutoff(distance_px, probability, asymptote, min(window)),) * d
        else:
            shown = tuple(map_cutoff) if isinstance(map_cutoff, (tuple, list)) else (map_cutoff,) * d
            shown = tuple(min(int(m), k) for m, k in zip(shown, window))
        values = stats[row]
        if d == 3:
            values = values[window[0]]
        k0, k1 = shown[-2], shown[-1]
        crop = values[window[-2] - k0 : window[-2] + k0 + 1, window[-1] - k1 : window[-1] + k1 + 1]
        e0, e1 = (k0 + 0.5) * voxel_size, (k1 + 0.5) * voxel_size
        image = map_ax.imshow(crop, extent=(-e1, e1, e0, -e0), cmap="viridis", interpolation="nearest")
        figure.colorbar(image, ax=map_ax, fraction=0.046, pad=0.04)
        axis_names = ("r_1", "r_2") if d == 3 else ("r_0", "r_1")
        map_ax.set_ylabel(f"{axis_names[0]} ({unit})")
        map_ax.set_xlabel(f"{axis_names[1]} ({unit})")
        extent = f"|r| <= {shown[-1]}" if len(set(shown)) == 1 else "|r_a| <= " + ", ".join(map(str, shown))
        how = f"\n(default: {DECAY_LENGTHS_SHOWN} decay lengths)" if auto_window else ""
        plane = ", plane r_0 = 0" if d == 3 else ""
        map_ax.set_title(f"{name}(r), {extent} pixels{plane}{how}", fontsize=9)

        curve_ax.plot(curves.distance, probability, color="C0", linewidth=1.4, label=f"{name}(r)")
        product = f"$\\phi_{{{i}}}\\phi_{{{j}}}$" if i != j else f"$\\phi_{{{i}}}^2$"
        curve_ax.axhline(asymptote, color="0.4", linestyle="--", linewidth=1, label=f"{product} = {asymptote:.4g}")
        if i == j:
            phi = volume_fractions[i]
            curve_ax.plot([0], [phi], "o", color="C3", label=f"$\\phi_{{{i}}}$ = S(0) = {phi:.4g}")
        curve_ax.set_xlim(0, curves.bin_edges[-1])
        curve_ax.set_xlabel(f"r ({unit})")
        curve_ax.set_ylabel(f"{name}(r)")
        curve_ax.set_title(f"radial {name}: mean over |r| in [r, r + 1 pixel)", fontsize=9)
        curve_ax.legend(fontsize=8, loc="upper right")
        curve_ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _middle_plane(values):
    """A 2D picture of a 2D array, or of a volume its middle slice across axis 0."""
    values = np.asarray(values)
    return values[values.shape[0] // 2] if values.ndim == 3 else values


def plot_reconstruction(example, samples, example_stats, sample_stats, pairs, path, *, errors=None, title=None):
    """Save the example, up to three samples, their S2 maps and their radial S2 curves as a PNG at ``path``.

    ``example`` (*spatial) and ``samples`` (n, *spatial) are label images (volumes: the middle slice
    across axis 0 is drawn); ``example_stats`` (P, *window) and ``sample_stats`` (n, P, *window) their
    statistics on one window (for volumes built from 2D slices, the mean statistics of their slices);
    ``pairs`` the P phase pairs; ``errors`` (n,) the RMS error of each sample, shown in its title.
    """
    from matplotlib.figure import Figure

    example_stats = np.asarray(example_stats, dtype=np.float64)
    sample_stats = np.asarray(sample_stats, dtype=np.float64)
    d = example_stats.ndim - 1
    n_shown = min(3, len(samples))
    n_phases = int(max(np.max(example), np.max(samples))) + 1
    shown = pairs.index((n_phases - 1, n_phases - 1)) if (n_phases - 1, n_phases - 1) in pairs else 0
    figure = Figure(figsize=(3.3 * (n_shown + 1), 9.0))
    grid = figure.add_gridspec(3, n_shown + 1, height_ratios=(1, 1, 1.1))
    columns = [("example", example, example_stats, None)]
    columns += [
        (f"sample {i}", samples[i], sample_stats[i], None if errors is None else errors[i]) for i in range(n_shown)
    ]
    k = example_stats.shape[-1] // 2
    for column, (name, labels, stats, error) in enumerate(columns):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(_middle_plane(labels), cmap="gray", vmin=0, vmax=n_phases - 1, interpolation="nearest")
        ax.set_title(name if error is None else f"{name}: RMS {error:.1e}")
        ax.axis("off")
        ax = figure.add_subplot(grid[1, column])
        image = ax.imshow(_middle_plane(stats[shown]), extent=(-k - 0.5, k + 0.5, k + 0.5, -k - 0.5), cmap="viridis")
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(f"{pair_name(pairs[shown])}(r)", fontsize=9)
        ax.set_xlabel("r (pixels)", fontsize=8)
    ax = figure.add_subplot(grid[2, :])
    example_curve = radial_profile(example_stats, spatial_dims=d, r_max=k)
    sample_curves = radial_profile(sample_stats[:n_shown], spatial_dims=d, r_max=k).probability
    for p, pair in enumerate(pairs):
        colour = f"C{p % 10}"
        ax.plot(example_curve.distance, example_curve.probability[p], color=colour, lw=2.2, label=pair_name(pair))
        for curve in sample_curves:
            ax.plot(example_curve.distance, curve[p], color=colour, lw=0.9, ls="--")
    ax.set_xlabel("|r| (pixels)")
    ax.set_ylabel("S2 (ring average)")
    ax.set_title("radial S2: example (solid), samples (dashed)")
    ax.legend(fontsize=8, ncol=2)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
