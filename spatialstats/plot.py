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
