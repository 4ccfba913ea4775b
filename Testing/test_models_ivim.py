"""The IVIM networks and the early-recurrence head: shapes, size, Grad-CAM, and the logistic
arithmetic checked by hand."""

import math

import pytest
import torch

from HEROVisionLib.models.ivim_net import EarlyRecurrenceHead, IVIMFeatureNet, LogisticModel


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return IVIMFeatureNet().eval()


def test_default_network_shapes_and_size(network):
    assert 0.5e6 < sum(p.numel() for p in network.parameters()) < 5e6
    bvalues, maps = torch.randn(2, 9, 64, 64, 64), torch.randn(2, 4, 64, 64, 64)
    with torch.no_grad():
        features = network.features(bvalues, maps)
        logits = network(bvalues, maps)
    assert features.shape == (2, 256) and logits.shape == (2,)
    # layer-normalised fusion: zero mean, unit variance per case (LayerNorm's affine starts at identity)
    torch.testing.assert_close(features.mean(1), torch.zeros(2), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        IVIMFeatureNet(crop_size=60, patch_size=8)


def _case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 9, 64, 64, 64, generator=generator), torch.randn(1, 4, 64, 64, 64, generator=generator)


def test_gradcam_maps_cover_the_crop_in_unit_range(network):
    head = EarlyRecurrenceHead.untrained(network.feature_count, seed=1)
    with torch.no_grad():
        tokens = network.tokens(*_case(2))
    towards = network.gradcam(tokens, head.deep_score)
    against = network.gradcam(tokens, lambda features: -head.deep_score(features))
    for cam_towards, cam_against in zip(towards, against):
        for cam in (cam_towards, cam_against):
            assert cam.shape == (1, 64, 64, 64) and cam.min() >= 0 and cam.max() <= 1
        # Evidence for the score or against it: one of the two is there to show.
        assert max(cam_towards.max().item(), cam_against.max().item()) == pytest.approx(1.0)


def test_gradcam_from_the_features_tokens_is_the_gradcam_of_the_whole_network(network):
    """Prediction takes the gradient from the score back to the tokens it computed for the features;
    Grad-CAM as usually written back-propagates through the whole network with gradients on. Same
    token gradients, same maps."""
    head = EarlyRecurrenceHead.untrained(network.feature_count, seed=3)
    bvalues, maps = _case(4)
    with torch.enable_grad():
        tokens = network.tokens(bvalues, maps)
        for token in tokens:
            token.retain_grad()
        head.deep_score(network.fuse(*tokens)).sum().backward()
    network.zero_grad(set_to_none=True)
    with torch.no_grad():
        cheap = network.gradcam(network.tokens(bvalues, maps), head.deep_score)
    for token, cam in zip(tokens, cheap):
        weights = token.grad.mean(dim=1, keepdim=True)
        full = torch.relu((weights * token.detach()).sum(-1)).reshape(1, 1, 8, 8, 8)
        full = torch.nn.functional.interpolate(full, size=(64,) * 3, mode="trilinear", align_corners=False)[:, 0]
        full = (full - full.min()) / (full.max() - full.min())
        torch.testing.assert_close(cam, full, rtol=1e-5, atol=1e-6)


def test_head_probabilities_are_the_logistic_formulas():
    head = EarlyRecurrenceHead(selected=[2, 0], mean=[1.0, -1.0], scale=[2.0, 0.5],
                               deep=LogisticModel(0.3, {"feature_2": 0.8, "feature_0": -1.2}),
                               combined=LogisticModel(-0.5, {"deep_score": 1.1, "tumor_size_cm": 0.2,
                                                             "tumor_D_1e3": -0.7}))
    features = torch.tensor([[0.5, 9.0, 3.0]])
    deep_score = 0.3 + 0.8 * (3.0 - 1.0) / 2.0 - 1.2 * (0.5 + 1.0) / 0.5
    combined_score = -0.5 + 1.1 * deep_score + 0.2 * 3.4 - 0.7 * 0.9
    deep, combined = head.probabilities(features, 3.4, 0.9e-3)
    assert deep.item() == pytest.approx(1 / (1 + math.exp(-deep_score)), rel=1e-6)
    assert combined.item() == pytest.approx(1 / (1 + math.exp(-combined_score)), rel=1e-6)
    assert EarlyRecurrenceHead.from_dict(head.to_dict()) == head
