"""The VAE network and its objective."""

import pytest
import torch
import torchvision

from model.objectives import STATISTICS_FORMS, VAEObjective, kl_divergence
from model.vae import ENCODERS, ResNetVAE, model_input, one_hot


@pytest.mark.parametrize("encoder", ENCODERS)
def test_shapes_for_every_encoder(encoder):
    torch.manual_seed(0)
    model = ResNetVAE(encoder=encoder, latent_dim=5, image_size=32)
    logits, mu, logvar = model(torch.rand(2, 1, 32, 32))
    assert logits.shape == (2, 1, 32, 32) and mu.shape == (2, 5) and logvar.shape == (2, 5)
    probabilities = model.phase_probabilities(logits)
    assert probabilities.shape == (2, 2, 32, 32)
    assert torch.allclose(probabilities.sum(1), torch.ones(2, 32, 32))


def test_several_phases_and_other_sizes():
    model = ResNetVAE(encoder="resnet18", latent_dim=3, image_size=48, n_phases=3).eval()
    labels = torch.randint(0, 3, (2, 48, 48), dtype=torch.uint8)
    logits, mu, _ = model(model_input(labels, 3))
    assert logits.shape == (2, 3, 48, 48)
    assert torch.allclose(model.phase_probabilities(logits).sum(1), torch.ones(2, 48, 48))
    assert torch.equal(model(model_input(labels, 3))[1], mu)  # eval mode: z = mu, deterministic


def test_frozen_trunk_trains_only_the_rest():
    model = ResNetVAE(encoder="resnet18", image_size=32, freeze_encoder=True)
    assert not any(p.requires_grad for p in model.trunk.parameters())
    assert all(p.requires_grad for p in model.to_rgb.parameters())
    assert all(p.requires_grad for p in ResNetVAE(encoder="resnet18", image_size=32, freeze_encoder=False).parameters())


def test_encoder_weights_come_from_a_local_file(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = ResNetVAE(encoder="resnet18", image_size=32, encoder_weights=str(path))
    assert torch.equal(model.trunk.conv1.weight, reference.conv1.weight)
    with pytest.raises(ValueError, match="not a torchvision resnet34"):
        ResNetVAE(encoder="resnet34", image_size=32, encoder_weights=str(path))
    with pytest.raises(ValueError, match="cannot read"):
        ResNetVAE(encoder="resnet18", image_size=32, encoder_weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(encoder="resnet19"), ["encoder", "resnet18"]),
        (dict(latent_dim=0), ["latent_dim"]),
        (dict(image_size=16), ["image_size"]),
    ],
)
def test_bad_model_options(kwargs, words):
    with pytest.raises(ValueError) as error:
        ResNetVAE(**kwargs)
    assert all(word in str(error.value) for word in words)


@pytest.mark.parametrize("form", STATISTICS_FORMS)
def test_statistics_distance_is_zero_only_for_equal_statistics(form):
    labels = torch.zeros(2, 16, 16, dtype=torch.uint8) + 1
    labels[:, 4:6, 2:12] = 0
    target = one_hot(labels, 2)
    objective = VAEObjective(form=form, statistics_range=0.1)
    shifted = one_hot(labels.roll(3, dims=1), 2)  # the periodic statistics do not see translations
    assert float(objective.statistics_distance(shifted, target).abs().max()) < 1e-6
    rotated = one_hot(labels.transpose(1, 2), 2)
    assert float(objective.statistics_distance(rotated, target).min()) > 1e-3


def test_objective_terms():
    probabilities = torch.full((2, 2, 8, 8), 0.5)
    target = one_hot(torch.ones(2, 8, 8, dtype=torch.uint8), 2)
    mu, logvar = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)
    terms = VAEObjective(alpha=0.0, beta=2.0, pixel_weight=1.0)(probabilities, target, mu, logvar)
    assert torch.allclose(kl_divergence(mu, logvar), torch.tensor([0.5, 0.0]))
    assert float(terms["pixel"]) == pytest.approx(64 * 0.25)
    assert float(terms["loss"]) == pytest.approx(64 * 0.25 + 2 * 0.25)
    with pytest.raises(ValueError, match="two phases"):
        thirds = torch.full((1, 3, 8, 8), 1 / 3)
        VAEObjective(form="authors-code").statistics_distance(thirds, thirds)
    with pytest.raises(ValueError, match="both 0"):
        VAEObjective(alpha=0.0, pixel_weight=0.0)
