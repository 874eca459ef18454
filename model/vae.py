"""The VAE of arXiv 2402.11103 as its authors' code builds it: a torchvision ResNet encoder and a
transposed-convolution decoder.

Input: (N, 1, H, W) images in [0, 1] (labels / (C - 1)). Output: decoder logits (N, 1, H, W) for
two phases (sigmoid: the intensity, i.e. the probability of phase 1) or (N, C, H, W) for C > 2
phases (softmax); :meth:`ResNetVAE.phase_probabilities` turns either into (N, C, H, W).
"""

import torch
import torchvision
from torch import nn

ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_MOMENTUM = 0.01
HIDDEN = 1024
DECODER_SEED_SHAPE = (64, 4, 4)


def _dense(n_in, n_out):
    return [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out, momentum=BN_MOMENTUM), nn.ReLU()]


def _upsample(n_in, n_out, activation=True):
    layers = [nn.ConvTranspose2d(n_in, n_out, kernel_size=3, stride=2), nn.BatchNorm2d(n_out, momentum=BN_MOMENTUM)]
    return layers + [nn.ReLU()] if activation else layers


def resnet_trunk(name, weights_path=None):
    """(torchvision ResNet without its fc layer, feature size); weights from a local state dict file or random."""
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {list(ENCODERS)}, got {name!r}")
    trunk = getattr(torchvision.models, name)(weights=None)
    features = trunk.fc.in_features
    trunk.fc = nn.Identity()
    if weights_path is None:
        return trunk, features
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as error:
        raise ValueError(f"cannot read encoder weights {weights_path!r}: {error}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{weights_path!r} does not hold a state dict")
    try:
        trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    except RuntimeError as error:
        raise ValueError(f"{weights_path!r} is not a torchvision {name} state dict: {error}") from None
    return trunk, features


class ResNetVAE(nn.Module):
    """The paper's VAE.

    Encoder: 1x1 conv to 3 channels, ImageNet normalisation, ResNet trunk (frozen when
    ``freeze_encoder``; its BatchNorm statistics still update in train mode, as in the authors'
    code), Linear-BN-ReLU to 1024 twice, linear heads to mu and logvar (``latent_dim``).
    Decoder: Linear-BN-ReLU 1024 twice, reshape to 64x4x4, three stride-2 transposed convolutions
    (to 39x39), bilinear resize to ``image_size``, 1x1 conv to the output channels. Training
    starts that conv's bias at the training set's phase fractions (:meth:`start_at_fractions`;
    the authors' starts at 0, an intensity of 0.5 everywhere, which Adam at 1e-3 takes about a
    thousand steps to leave).
    """

    def __init__(
        self,
        *,
        encoder="resnet152",
        latent_dim=9,
        image_size=224,
        n_phases=2,
        freeze_encoder=True,
        encoder_weights=None,
    ):
        super().__init__()
        if latent_dim < 1 or image_size < 32 or n_phases < 2:
            raise ValueError(
                f"need latent_dim >= 1, image_size >= 32 and n_phases >= 2, got {latent_dim}, {image_size}, {n_phases}"
            )
        self.latent_dim, self.image_size, self.n_phases = latent_dim, image_size, n_phases
        self.to_rgb = nn.Conv2d(1, 3, kernel_size=1)
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.trunk, features = resnet_trunk(encoder, encoder_weights)
        self.trunk.requires_grad_(not freeze_encoder)
        self.encoder_head = nn.Sequential(*_dense(features, HIDDEN), *_dense(HIDDEN, HIDDEN))
        self.to_mu = nn.Linear(HIDDEN, latent_dim)
        self.to_logvar = nn.Linear(HIDDEN, latent_dim)
        seed_size = DECODER_SEED_SHAPE[0] * DECODER_SEED_SHAPE[1] * DECODER_SEED_SHAPE[2]
        self.decoder_head = nn.Sequential(*_dense(latent_dim, HIDDEN), *_dense(HIDDEN, seed_size))
        self.upsample = nn.Sequential(*_upsample(64, 32), *_upsample(32, 8), *_upsample(8, 3, activation=False))
        self.to_output = nn.Conv2d(3, 1 if n_phases == 2 else n_phases, kernel_size=1)

    def encode(self, images):
        """(N, 1, H, W) in [0, 1] -> (mu, logvar), each (N, latent_dim)."""
        rgb = (self.to_rgb(images) - self.rgb_mean) / self.rgb_std
        hidden = self.encoder_head(self.trunk(rgb))
        return self.to_mu(hidden), self.to_logvar(hidden)

    def decode(self, z):
        """(N, latent_dim) -> logits (N, 1 or C, image_size, image_size)."""
        seed = self.decoder_head(z).view(-1, *DECODER_SEED_SHAPE)
        small = self.upsample(seed)
        resized = nn.functional.interpolate(
            small, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return self.to_output(resized)

    def forward(self, images):
        """(N, 1, H, W) -> (logits, mu, logvar); z = mu + eps * sigma in train mode, z = mu in eval mode."""
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def start_at_fractions(self, fractions):
        """Set the output bias so that a featureless decoder gives the phase ``fractions`` (C,) everywhere."""
        fractions = torch.as_tensor(fractions, dtype=torch.float32).clamp(1e-4, 1 - 1e-4)
        bias = torch.logit(fractions[1:2]) if self.n_phases == 2 else fractions.log()
        self.to_output.bias.copy_(bias)

    def phase_probabilities(self, logits):
        """Logits (N, 1 or C, H, W) -> phase probabilities (N, C, H, W) in float32."""
        logits = logits.float()
        if self.n_phases == 2:
            intensity = torch.sigmoid(logits)
            return torch.cat([1 - intensity, intensity], dim=1)
        return torch.softmax(logits, dim=1)


def model_input(labels, n_phases):
    """uint8 labels (N, H, W) -> encoder input (N, 1, H, W) = labels / (C - 1) in float32."""
    return labels.unsqueeze(1).float() / (n_phases - 1)


def one_hot(labels, n_phases):
    """uint8 labels (N, H, W) -> float32 one-hot (N, C, H, W)."""
    return nn.functional.one_hot(labels.long(), n_phases).movedim(-1, 1).float()
