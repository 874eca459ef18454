"""spatialstats: exact, differentiable two-point statistics of microstructures.

import spatialstats as ss
s2 = ss.two_point(image > 0.5, cutoff=16)             # numpy, torch or cupy in, same type out
stats, pairs = ss.two_point_all(labels, pairs="all")    # every phase, auto and cross
loss = ss.TwoPointLoss(cutoff=16)(pred, target)         # differentiable, (N, C, *spatial)
curve = ss.radial_profile(ss.two_point(image, periodic=False))  # S2(|r|), PoreSpy's radial curve
samples = ss.reconstruct(labels, shape=(256, 256), n_samples=8).labels  # statistically equivalent images
"""

from ._backend import BackendUnavailableError, available_backends
from .loss import TwoPointLoss, two_point_loss, two_point_statistics
from .ops import TwoPointAll, two_point, two_point_all
from .radial import RadialProfile, radial_profile
from .reconstruct import Reconstruction, reconstruct

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "RadialProfile",
    "Reconstruction",
    "TwoPointAll",
    "TwoPointLoss",
    "available_backends",
    "radial_profile",
    "reconstruct",
    "two_point",
    "two_point_all",
    "two_point_loss",
    "two_point_statistics",
]
