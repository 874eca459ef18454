"""The VAE's training objective: alpha * two-point distance + beta * KL + pixel_weight * pixel error.

Every term is per image and the batch loss is their mean over the batch (the authors' code sums
over the batch instead; with Adam that only rescales the effective epsilon). For C phases the
statistics compared are the auto-correlations of the line phase (phase 0) when C = 2 (in a
two-phase image the other one follows from it) and of every phase when C > 2.

Statistics distances (``STATISTICS_FORMS``), with D the difference of the statistics of the
reconstruction and of the original over the window W (periodic, every displacement by default):

- "paper-equation": Eq. (1) of the paper, ||D||_2 per image, on the phase probabilities.
- "authors-code": the authors' code: the statistics of the soft line indicator
  exp(-x^2 / (2 * 0.25^2)) of the intensity x (of both images), min/max-normalised by the
  training set's range R of hard statistics, summed squared error: sum_W (D / (R + 1e-6))^2.
  Two phases only.
- "normalized" (our default): the same normalised summed squared error on the phase
  probabilities themselves. The soft indicator has zero slope at x = 0 (a confident line gets no
  gradient) and never reaches 0 on the background (exp(-8) at x = 1), so the probabilities are
  the better field; the squared error (unlike the norm of Eq. 1) is a Gaussian log-likelihood of
  the statistics, whose gradient vanishes at the optimum and whose size, after the
  normalisation, balances the KL term as in the authors' runs at beta = 1.

Measured in the first demo-cpu setting (64x64 lines, 8 epochs, 800 test images): "paper-equation"
collapses the posterior (the norm is about 0.7 against the KL, which falls to 2e-4 nats;
orientation preserved 53%, chance); "authors-code" has the lowest two-point MSE by the paper's
soft-indicator metric (mean 6.6e-5, "normalized" 1.05e-4, the pixel-loss VAE 1.5e-4) but its
intensities are not probabilities: on the probabilities its two-point MSE is 4.6e-4 ("normalized"
7.2e-5, pixel loss 8.4e-5).
"""

import numpy as np
import torch
from torch import nn

from spatialstats import TwoPointLoss
from spatialstats.ops import resolve_window, window_shape

from .data import LINE_PHASE

STATISTICS_FORMS = ("normalized", "authors-code", "paper-equation")
SOFT_INDICATOR_WIDTH = 0.25
NORMALISATION_EPSILON = 1e-6


def statistics_fields(probabilities, form="normalized"):
    """The fields whose auto-correlations the statistics ``form`` compares: (N, C, H, W) -> (N, 1 or C, H, W).

    The line-phase probability for two phases (its soft indicator for "authors-code"), all phases for more.
    """
    if probabilities.shape[1] > 2:
        return probabilities
    if form == "authors-code":
        intensity = probabilities[:, 1:]
        return torch.exp(-((intensity - LINE_PHASE) ** 2) / (2 * SOFT_INDICATOR_WIDTH**2))
    return probabilities[:, LINE_PHASE : LINE_PHASE + 1]


def kl_divergence(mu, logvar):
    """KL(q(z|x) || N(0, I)) per image: (N, latent) -> (N,)."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def pixel_error(probabilities, target):
    """Summed squared pixel error per image (mean over the C channels; for two phases (x - x_hat)^2): (N,)."""
    return (probabilities - target).square().mean(1).flatten(1).sum(1)


class VAEObjective(nn.Module):
    """alpha * statistics distance + beta * KL + pixel_weight * pixel error, averaged over the batch.

    ``statistics_range``: the range R of the training set's hard statistics (see
    :func:`model.train.training_set_summary`), used by the normalised forms. Terms with weight 0 are
    still computed (without gradient) so that every run logs all of them.
    """

    def __init__(
        self,
        *,
        form="normalized",
        alpha=1.0,
        beta=1.0,
        pixel_weight=0.0,
        periodic=True,
        cutoff=None,
        statistics_range=1.0,
    ):
        super().__init__()
        if form not in STATISTICS_FORMS:
            raise ValueError(f"statistics form must be one of {list(STATISTICS_FORMS)}, got {form!r}")
        if min(alpha, beta, pixel_weight) < 0:
            raise ValueError(f"alpha, beta and pixel_weight must be >= 0, got {alpha}, {beta}, {pixel_weight}")
        if alpha == 0 and pixel_weight == 0:
            raise ValueError("alpha and pixel_weight are both 0: the objective would not ask for any reconstruction")
        self.form, self.alpha, self.beta, self.pixel_weight = form, alpha, beta, pixel_weight
        distance = "l2" if form == "paper-equation" else "mse"
        self.two_point = TwoPointLoss(cutoff, periodic=periodic, distance=distance, reduction="none")
        self.register_buffer("statistics_range", torch.tensor(float(statistics_range)))

    def statistics_distance(self, probabilities, target):
        """The chosen distance between the statistics of two (N, C, H, W) probability stacks: (N,)."""
        if self.form == "authors-code" and probabilities.shape[1] != 2:
            raise ValueError("the authors-code statistics use the soft line indicator and need two phases")
        distance = self.two_point(statistics_fields(probabilities, self.form), statistics_fields(target, self.form))
        if self.form == "paper-equation":
            return distance
        window = resolve_window(self.two_point.cutoff, probabilities.shape[2:], self.two_point.periodic)
        entries = float(np.prod(window_shape(window)))
        return distance * entries / (self.statistics_range + NORMALISATION_EPSILON) ** 2

    def forward(self, probabilities, target, mu, logvar):
        """Batch means {"loss", "statistics", "kl", "pixel"} for probabilities and one-hot target (N, C, H, W)."""
        terms = {
            "statistics": (self.alpha, lambda: self.statistics_distance(probabilities, target)),
            "kl": (self.beta, lambda: kl_divergence(mu.float(), logvar.float())),
            "pixel": (self.pixel_weight, lambda: pixel_error(probabilities, target)),
        }
        values = {}
        loss = 0
        for name, (weight, term) in terms.items():
            with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):
                values[name] = term().mean()
            loss = loss + weight * values[name]
        return {"loss": loss, **values}
