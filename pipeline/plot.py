"""Plots for `pipeline inspect`."""


def plot_features(feats, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    numeric = {n: a for n, a in feats.arrays.items() if a.dtype.kind in "fiub" and a.size}
    fig, axes = plt.subplots(max(1, len(numeric)), 1, figsize=(10, 3 * max(1, len(numeric))), squeeze=False)
    for ax, (name, arr) in zip(axes[:, 0], numeric.items()):
        arr = np.asarray(arr, dtype=float)
        if arr.ndim >= 2:
            t = feats.times.get(name)
            extent = None
            if t is not None and len(t) > 1:
                extent = [t[0], t[-1], 0, arr.reshape(len(arr), -1).shape[1]]
            ax.imshow(arr.reshape(len(arr), -1).T, aspect="auto", origin="lower", extent=extent,
                      interpolation="nearest")
            ax.set_xlabel("seconds" if extent else "step")
            ax.set_ylabel("dimension")
        else:
            ax.plot(feats.times.get(name, np.arange(len(arr))) if arr.ndim == 1 else [0], np.atleast_1d(arr))
        ax.set_title(f"{title}: {name} {tuple(arr.shape)}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
