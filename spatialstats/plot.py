"""Pictures of two-point statistics: one panel per statistic, axes in pixels, a colour bar each."""

import numpy as np


def pyplot():
    """matplotlib.pyplot drawing to files (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pair_label(pair):
    i, j = pair
    return f"S2 of phase {i}" if i == j else f"S2 of phases {i}, {j}"


def plot_statistics(stats, pairs, path, *, title=None):
    """Save ``stats`` (P, *window) (1D, 2D or 3D windows) as a PNG at ``path``.

    2D maps are drawn with r_0 down and r_1 across; for 3D the plane r_0 = 0 is shown.
    """
    plt = pyplot()
    stats = np.asarray(stats, dtype=np.float64)
    n = stats.shape[0]
    columns = min(n, 3)
    rows = -(-n // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 4.0 * rows), squeeze=False)
    for panel, ax in enumerate(axes.flat):
        if panel >= n:
            ax.axis("off")
            continue
        values = stats[panel]
        label = pair_label(pairs[panel])
        if values.ndim == 1:
            k = values.shape[0] // 2
            ax.plot(np.arange(-k, k + 1), values)
            ax.set_xlabel("r (pixels)")
            ax.set_ylabel("S2")
        else:
            if values.ndim == 3:
                values = values[values.shape[0] // 2]
                label += " (plane r_0 = 0)"
            k0, k1 = values.shape[0] // 2, values.shape[1] // 2
            image = ax.imshow(values, extent=(-k1 - 0.5, k1 + 0.5, k0 + 0.5, -k0 - 0.5), cmap="viridis")
            figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            axis_names = ("r_1", "r_2") if stats.ndim == 4 else ("r_0", "r_1")
            ax.set_ylabel(f"{axis_names[0]} (pixels)")
            ax.set_xlabel(f"{axis_names[1]} (pixels)")
        ax.set_title(label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
    from .radial import radial_profile

    plt = pyplot()
    example_stats = np.asarray(example_stats, dtype=np.float64)
    sample_stats = np.asarray(sample_stats, dtype=np.float64)
    d = example_stats.ndim - 1
    n_shown = min(3, len(samples))
    n_phases = int(max(np.max(example), np.max(samples))) + 1
    shown = pairs.index((n_phases - 1, n_phases - 1)) if (n_phases - 1, n_phases - 1) in pairs else 0
    figure = plt.figure(figsize=(3.3 * (n_shown + 1), 9.0))
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
        ax.set_title(pair_label(pairs[shown]), fontsize=9)
        ax.set_xlabel("r (pixels)", fontsize=8)
    ax = figure.add_subplot(grid[2, :])
    example_curve = radial_profile(example_stats, spatial_dims=d, r_max=k)
    sample_curves = radial_profile(sample_stats[:n_shown], spatial_dims=d, r_max=k).probability
    for p, pair in enumerate(pairs):
        colour = f"C{p % 10}"
        ax.plot(example_curve.distance, example_curve.probability[p], color=colour, lw=2.2, label=pair_label(pair))
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
    plt.close(figure)
