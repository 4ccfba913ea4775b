"""The HoVer-Trans encoder and the HEROVision survival network: shapes, size, attention rollout,
missing modalities, modality drop-out, determinism, config round trip, gradient flow."""

import json

import numpy as np
import pytest
import torch

from HEROVisionLib.models import (MODALITY_IMAGES, HEROVisionNet, HoVerTransEncoder, attention_rollout,
                                  upsample_attention)
from HEROVisionLib.models.herovision_net import HEROVisionEnsemble

# A small encoder keeps most tests fast; the default one is checked for shapes and size.
SMALL_ENCODER = {"image_size": 32, "stem_channels": 8, "patch_grid": 4, "embed_dim": 16, "depth": 2, "num_heads": 2,
                 "out_features": 16}
SMALL_SIZE = SMALL_ENCODER["image_size"]


def _images(count, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(count, k, size, size, generator=generator) for name, k in MODALITY_IMAGES.items()}


def _small_net(**kwargs):
    torch.manual_seed(0)
    return HEROVisionNet(encoder=SMALL_ENCODER, **kwargs).eval()


def test_default_encoder_shapes_and_attention():
    encoder = HoVerTransEncoder().eval()
    with torch.no_grad():
        images = torch.randn(2, 1, 128, 128)
        features, attentions = encoder(images, return_attention=True)
        # The weights are computed beside the fused kernel: the features do not depend on asking for them.
        assert torch.equal(encoder(images), features)
    assert features.shape == (2, 128)
    assert len(attentions) == 4
    for attention in attentions:
        assert attention.shape == (2, 64, 64)
        assert torch.allclose(attention.sum(dim=-1), torch.ones(2, 64), atol=1e-5)
    assert attention_rollout(attentions, encoder.grid_shape).shape == (2, 8, 8)


def test_encoder_refuses_images_of_another_size():
    with pytest.raises(ValueError, match="expected images of shape"):
        HoVerTransEncoder(**SMALL_ENCODER)(torch.zeros(1, 1, 64, 64))


def test_default_network_size_and_output_shape():
    net = HEROVisionNet().eval()
    assert 0.3e6 <= sum(p.numel() for p in net.parameters()) <= 5e6
    with torch.no_grad():
        log_hazard = net(_images(2, 128), torch.ones(2, 4, dtype=torch.bool))
    assert log_hazard.shape == (2,)
    assert torch.isfinite(log_hazard).all()


def test_attention_rollout_matches_a_hand_computed_example():
    """Two blocks of 3-patch attention (grid 1 × 3) for one case, and an identity attention for a
    second case, whose rollout is uniform: a constant map, reported as all 0."""
    first = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    second = np.array([[0.2, 0.2, 0.6], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]])
    mixed = [0.5 * a + 0.5 * np.eye(3) for a in (first, second)]
    mixed = [m / m.sum(axis=1, keepdims=True) for m in mixed]
    importance = (mixed[1] @ mixed[0]).mean(axis=0)
    expected = (importance - importance.min()) / (importance.max() - importance.min())

    identity = np.eye(3)
    attentions = [torch.tensor(np.stack([a, identity]), dtype=torch.float64) for a in (first, second)]
    maps = attention_rollout(attentions, (1, 3))
    assert maps.shape == (2, 1, 3)
    np.testing.assert_allclose(maps[0, 0].numpy(), expected, atol=1e-12)
    assert torch.equal(maps[1], torch.zeros(1, 3, dtype=torch.float64))


def test_upsampled_attention_keeps_the_range():
    maps = torch.rand(3, 4, 4)
    upsampled = upsample_attention(maps, 32)
    assert upsampled.shape == (3, 32, 32)
    assert upsampled.min() >= maps.min() and upsampled.max() <= maps.max()


def test_attention_maps_cover_present_images_and_are_zero_for_absent_ones():
    net = _small_net()
    present = torch.tensor([[True, True, False, True], [True, False, True, True]])
    with torch.no_grad():
        scores, attention = net.scores_and_attention(_images(2, SMALL_SIZE), present)
        assert torch.equal(scores, net(_images(2, SMALL_SIZE), present))  # the scores of forward, bit for bit
    assert set(attention) == set(MODALITY_IMAGES)
    for index, (name, k) in enumerate(MODALITY_IMAGES.items()):
        maps = attention[name]
        assert maps.shape == (2, k, SMALL_SIZE, SMALL_SIZE)
        assert maps.min() >= 0 and maps.max() <= 1
        for case in range(2):
            if present[case, index]:  # bilinear interpolation between patch centres may miss the peak of 1
                assert (maps[case].flatten(1).amax(dim=1) > 0.5).all()
            else:
                assert torch.equal(maps[case], torch.zeros_like(maps[case]))


def test_an_ensemble_scores_and_explains_as_the_mean_of_its_members():
    torch.manual_seed(1)
    ensemble = HEROVisionEnsemble.of([HEROVisionNet(encoder=SMALL_ENCODER) for _ in range(3)]).eval()
    present = torch.tensor([[True, False, True, True], [True, True, True, True]])
    images = _images(2, SMALL_SIZE, seed=5)
    with torch.no_grad():
        scores, attention = ensemble.scores_and_attention(images, present)
        members = [member.scores_and_attention(images, present) for member in ensemble.members]
        assert torch.equal(scores, ensemble(images, present))
    torch.testing.assert_close(scores, sum(member_scores for member_scores, _ in members) / 3)
    for name in MODALITY_IMAGES:
        torch.testing.assert_close(attention[name], sum(maps[name] for _, maps in members) / 3)


def test_absent_modality_pixels_do_not_change_the_score():
    net = _small_net()
    present = torch.tensor([[True, False, True, True], [False, True, True, False]])
    images = _images(2, SMALL_SIZE)
    other = {name: tensor.clone() for name, tensor in images.items()}
    other["dwi"][0] = 1e3
    other["t2wi"][1] = torch.randn(3, SMALL_SIZE, SMALL_SIZE)
    other["ceus"][1] = 0.0
    with torch.no_grad():
        assert torch.equal(net(images, present), net(other, present))
        assert not torch.equal(net(images, present), net(images, torch.ones(2, 4, dtype=torch.bool)))


def test_a_case_without_any_modality_is_refused():
    net = _small_net()
    present = torch.tensor([[True, False, False, False], [False, False, False, False]])
    with pytest.raises(ValueError, match="none of the modalities"):
        net(_images(2, SMALL_SIZE), present)
    with pytest.raises(ValueError, match="none of the modalities"):
        net.scores_and_attention(_images(2, SMALL_SIZE), present)


def test_eval_mode_is_deterministic():
    net = _small_net()
    present = torch.tensor([[True, True, True, False]])
    with torch.no_grad():
        assert torch.equal(net(_images(1, SMALL_SIZE), present), net(_images(1, SMALL_SIZE), present))


def test_modality_dropout_never_drops_every_modality():
    net = _small_net(modality_dropout=0.25)
    generator = torch.Generator().manual_seed(3)
    present = torch.rand(4000, 4, generator=generator) < 0.6
    present[~present.any(dim=1), 0] = True
    drawn = net.draw_presence(present, generator=torch.Generator().manual_seed(11))
    assert drawn.dtype == torch.bool and drawn.shape == present.shape
    assert not (drawn & ~present).any()
    assert drawn.any(dim=1).all()
    single = present.sum(dim=1) == 1
    assert torch.equal(drawn[single], present[single])
    assert 0.72 < drawn[present].float().mean() < 0.80
    assert torch.equal(drawn, net.draw_presence(present, generator=torch.Generator().manual_seed(11)))

    heavy = _small_net(modality_dropout=0.95)
    assert heavy.draw_presence(torch.ones(1000, 4, dtype=torch.bool), torch.Generator().manual_seed(5)).any(1).all()


def test_training_mode_applies_modality_dropout():
    net = _small_net(modality_dropout=0.5, fusion_dropout=0.0).train()  # the only randomness left
    images, present = _images(8, SMALL_SIZE), torch.ones(8, 4, dtype=torch.bool)
    torch.manual_seed(1)
    first = net(images, present)
    torch.manual_seed(2)
    assert not torch.equal(first, net(images, present))


def test_config_round_trip_rebuilds_the_architecture():
    net = _small_net(modality_features=24, fusion_hidden=40, modality_dropout=0.1)
    config = json.loads(json.dumps(net.to_config()))
    assert config == net.config
    rebuilt = HEROVisionNet.from_config(config)
    assert rebuilt.config == net.config
    assert rebuilt.modalities == net.modalities
    expected = {key: value.shape for key, value in net.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == expected


def test_gradients_reach_every_encoder_parameter_of_a_present_modality():
    net = _small_net()
    present = torch.tensor([[True, True, True, False], [True, False, True, False]])
    net(_images(2, SMALL_SIZE), present).sum().backward()
    for name in ("t2wi", "dwi", "us"):
        for parameter_name, parameter in net.encoders[name].named_parameters():
            assert parameter.grad is not None, f"{name}: {parameter_name}"
            assert parameter.grad.abs().sum() > 0, f"{name}: {parameter_name}"
    assert all(parameter.grad is None for parameter in net.encoders["ceus"].parameters())
