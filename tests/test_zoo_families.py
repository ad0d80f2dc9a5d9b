"""The workshop's FC and VAE families and their compact variants (models/fc.py, models/vae.py).

Workshop-size models are never allocated here: they build on the meta device, and
their parameter counts are checked against the arithmetic of their configs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pacodec import zoo
from pacodec.errors import InputError
from pacodec.models import REGISTRY, build_model
from pacodec.models import fc, vae
from pacodec.train import TrainConfig, train

COMPACT = ("vanilla-fc-compact", "multilayer-fc-compact", "vae-compact")


def test_tiling_round_trips_in_the_documented_order():
    images = torch.rand(2, 3, 200, 160)
    blocks = fc.tile(images)
    assert blocks.shape == (2, 16, 6000)
    assert torch.equal(fc.untile(blocks), images)
    for k in range(16):
        r, c = 50 * (k // 4), 40 * (k % 4)
        expected = images[:, :, r : r + 50, c : c + 40].reshape(2, 6000)  # channel-first
        assert torch.equal(blocks[:, k], expected), k


def test_codes_follow_block_order():
    """Block k's code depends on block k's pixels only (per-block models)."""
    model = build_model("vanilla-fc-500", {"code": 4})
    frames = np.random.default_rng(0).integers(0, 256, (1, 200, 160, 3), dtype=np.uint8)
    before = model.encode(frames)
    frames[0, 50:100, 120:160] = 0  # rows 50-99, columns 120-159: block 7
    after = model.encode(frames)
    changed = np.flatnonzero(np.any(before[0] != after[0], axis=1))
    assert changed.tolist() == [7]


@pytest.mark.parametrize("model_id,code,hidden,mb", [
    ("vanilla-fc-1000", 1000, (), 768), ("vanilla-fc-500", 500, (), 384),
    ("multilayer-fc-1000", 1000, (3200, 1600), 3319), ("multilayer-fc-500", 500, (3200, 1600), 3216),
])
def test_workshop_fc_sizes_without_allocating(model_id, code, hidden, mb):
    model = build_model(model_id)
    assert model.code_shape == (16, code)
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    widths = [6000, *hidden, code]
    per_block = sum(2 * a * b + a + b for a, b in zip(widths[:-1], widths[1:]))
    count = sum(p.numel() for p in model.parameters())
    assert count == 16 * per_block == fc.parameter_count(model.config)
    assert round(count * 4 / 1e6) == mb  # float32 bytes, as the workshop's table
    assert not REGISTRY[model_id].half_precision


def test_workshop_vae_size_without_allocating():
    model = build_model("vae")
    assert model.code_shape == (2048,) and all(p.is_meta for p in model.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert count == vae.parameter_count(model.config)
    # Three 16,640 × 2,048 matrices (μ, log σ², decoder) dominate: the workshop's 410 MB.
    assert 3 * 16640 * 2048 < count < 3 * 16640 * 2048 + 2_000_000
    assert 405 < count * 4 / 1e6 < 415


@pytest.mark.parametrize("model_id", COMPACT)
def test_compact_models_build_code_and_weigh_under_10_mb(model_id):
    spec = REGISTRY[model_id]
    assert spec.half_precision
    model = build_model(model_id)
    counted = (fc.parameter_count if spec.family == "fc" else vae.parameter_count)(model.config)
    assert sum(p.numel() for p in model.parameters()) == counted
    data = zoo.serialize(model, half_precision=True)
    assert len(data) < 10_000_000
    frames = np.random.default_rng(1).integers(0, 256, (2, 200, 160, 3), dtype=np.uint8)
    codes = model.encode(frames)
    assert codes.shape == (2, *model.code_shape) and codes.dtype == np.float32
    assert model.decode(codes).shape == (2, 200, 160, 3)
    loaded = zoo.load_bytes(data, expected_id=model_id)
    assert np.abs(loaded.encode(frames) - codes).max() < 0.05  # float16 storage


@pytest.mark.parametrize("model_id", ["vanilla-fc-compact", "multilayer-fc-compact", "vanilla-fc-500"])
def test_fc_codes_lie_in_unit_interval(model_id):
    model = build_model(model_id, {"code": 8} if model_id == "vanilla-fc-500" else None)
    model.materialize()
    with torch.no_grad():  # push the code layer hard both ways
        for p in model.parameters():
            p.mul_(50.0)
    frames = np.random.default_rng(2).integers(0, 256, (2, 200, 160, 3), dtype=np.uint8)
    codes = model.encode(frames)
    assert codes.min() >= 0.0 and codes.max() <= 1.0 and fc.FCAutoencoder.code_range == (0.0, 1.0)


def test_multilayer_compact_starts_as_the_vanilla_compact_it_is_initialised_from(tmp_path):
    """Its residual layers start at zero: --init from vanilla-fc-compact's weights gives
    that model exactly; training then moves the residual layers."""
    from pacodec.train import init_from

    torch.manual_seed(0)
    vanilla = build_model("vanilla-fc-compact")
    with torch.no_grad():
        vanilla.code_bias.normal_(0, 0.5)
        vanilla.output_bias.normal_(0, 0.5)
    path = tmp_path / "v.safetensors"
    zoo.save(vanilla, path)
    multi = build_model("multilayer-fc-compact")
    assert len(multi.shared.encoder_residual) == len(multi.shared.decoder_residual) == 2
    copied = init_from(multi, path)
    assert copied == len(vanilla.state_dict())  # every tensor of the vanilla model
    frames = np.random.default_rng(4).integers(0, 256, (2, 200, 160, 3), dtype=np.uint8)
    codes = vanilla.encode(frames)
    assert np.allclose(multi.encode(frames), codes, atol=1e-6)
    assert np.array_equal(multi.decode(codes), vanilla.decode(codes))
    multi.reset_parameters()  # a fresh start also begins with identity residual layers
    assert all(not r.outer.weight.detach().any() for r in multi.shared.encoder_residual)


def test_vae_encodes_mu_deterministically_and_trains_on_bce_plus_beta_kl():
    torch.manual_seed(0)
    model = build_model("vae-compact")
    frames = np.random.default_rng(3).integers(0, 256, (2, 200, 160, 3), dtype=np.uint8)
    a, b = model.encode(frames), model.encode(frames)
    assert np.array_equal(a, b)
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    model.eval()
    with torch.no_grad():
        mu, logvar = model._moments(images)
        assert np.allclose(a, mu.numpy(), atol=1e-6)
        model.train()
        recon, mu_t, logvar_t = model(images)
        loss, logs = model.criterion(images, (recon, mu_t, logvar_t))
    values = images[0].numel()
    bce = torch.nn.functional.binary_cross_entropy(recon, images, reduction="sum") / (2 * values)
    kl = -0.5 * torch.sum(1 + logvar_t - mu_t**2 - logvar_t.exp()) / (2 * values)
    # vae-compact is a β-VAE (β = 0.01); the workshop's vae keeps the textbook β = 1
    assert model.config.beta == 0.01 and build_model("vae").config.beta == 1.0
    assert torch.allclose(loss, bce + model.config.beta * kl) and logs["kl"] > 0 and logs["bce"] > 0


def test_training_one_block_at_a_time_assembles_a_whole_model(tmp_path, atari_frames):
    """16 shards of a (shrunk) per-block model, trained one block each, join into one file."""
    frames = atari_frames[:4]
    for k in range(16):
        summary = train(TrainConfig(model_id="vanilla-fc-500", out_dir=tmp_path, epochs=1, batch_size=4,
                                    model_config={"code": 4}, block=k, command=f"pacodec train x --block {k} -o y"),
                        frames)
        assert summary["assembled"] == (k == 15)
        assert (tmp_path / f"vanilla-fc-500.block{k:02d}.log.csv").is_file()
    entry = zoo.read_manifest(tmp_path)[0]
    assert entry["id"] == "vanilla-fc-500" and entry["config"]["blocks"] is None
    assert entry["training"]["epochs"] == 1 and "--block $k" in entry["training"]["command"]
    model, _ = zoo.load("vanilla-fc-500", tmp_path)
    assert model.code_shape == (16, 4)
    codes = model.encode(frames)
    assert model.decode(codes).shape == frames.shape
    # Block 3's sub-model in the whole model is the one its shard trained.
    shard = zoo.load_bytes((tmp_path / "vanilla-fc-500.block03.safetensors").read_bytes())
    assert shard.code_shape == (1, 4)
    assert np.allclose(shard.encode(frames)[:, 0], codes[:, 3], atol=1e-6)
    with pytest.raises(InputError, match="holds blocks"):
        shard.decode(codes[:, 3:4])


def test_shared_models_refuse_block_training():
    with pytest.raises(InputError, match="shared"):
        build_model("vanilla-fc-compact", {"blocks": [0]})


def _block_pca(frames: np.ndarray, block: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, top-k principal directions) of block ``block`` of ``frames``, by plain SVD."""
    x = fc.tile(torch.from_numpy(frames).permute(0, 3, 1, 2).double() / 255)[:, block]
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, vh[:k]


@pytest.mark.parametrize("hidden", [(), (12, 9)], ids=["vanilla", "multilayer"])
def test_pca_start_is_the_principal_components_projection(atari_frames, hidden):
    """--pca writes the best linear autoencoder into the layers: on its training frames
    the model outputs exactly the projection onto the top `code` components, through
    the clamp (vanilla) or the ReLU layers too (multilayer), and its codes sit in the
    middle half of [0, 1] so naive rounding costs next to nothing."""
    frames = atari_frames[:12]
    model = build_model("multilayer-fc-500" if hidden else "vanilla-fc-500",
                        {"code": 5, "hidden": list(hidden), "blocks": [6]})
    model.materialize()
    assert model.config.linear
    summary = model.pca_init(frames)
    assert "5–5 kept" in summary
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        blocks, codes = model(images)
    mean, comps = _block_pca(frames, 6, 5)
    target = fc.tile(images.double())[:, 6]
    projection = ((target - mean) @ comps.T) @ comps + mean
    assert torch.allclose(blocks[:, 0].double(), projection, atol=2e-5)
    assert codes.min() >= 0.25 - 1e-5 and codes.max() <= 0.75 + 1e-5
    assert (codes.amax(0) - codes.amin(0)).min() > 0.2  # each kept component uses its range
    with torch.no_grad():
        rounded = model.decode_blocks(torch.round(codes * 255) / 255)
    error = torch.mean((rounded - blocks) ** 2)
    assert error < 0.01 * torch.mean((projection - target) ** 2) + 1e-7


def test_pca_start_keeps_multilayer_extra_units_trainable(atari_frames):
    """Extra hidden units (beyond the carried components) start with zero outgoing
    weights, so the function is PCA's, yet they get gradients."""
    frames = atari_frames[:8]
    model = build_model("multilayer-fc-500", {"code": 3, "hidden": [10, 6], "blocks": [0]})
    model.materialize()
    model.pca_init(frames)
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    loss, _ = model.criterion(images, model(images))
    loss.backward()
    dec = [m for m in model.blocks["b00"].decoder if isinstance(m, torch.nn.Linear)]
    assert dec[1].weight.grad[:, 3:6].abs().sum() > 0  # layer 1's extra units: outgoing
    assert dec[-1].weight.grad[:, 3:].abs().sum() > 0


def test_pca_start_refuses_models_it_does_not_fit(atari_frames):
    with pytest.raises(InputError, match="per-block linear"):
        build_model("vanilla-fc-compact").pca_init(atari_frames[:4])
    model = build_model("vanilla-fc-500", {"code": 3, "blocks": [0]})
    model.materialize()
    with pytest.raises(InputError, match="at least 2"):
        model.pca_init(atari_frames[:1])


@pytest.mark.parametrize("reduce", [None, 4], ids=["vae", "vae-compact"])
def test_vae_pca_start_whitens_mu_and_fits_the_decoder_by_least_squares(atari_frames, reduce):
    """μ starts as the top principal components of the encoder's features with unit
    variance, log σ² at log 0.01, and the decoder's Linear as the least-squares map
    from μ to what follows it (its residual is orthogonal to every μ component)."""
    frames = atari_frames[:10]
    torch.manual_seed(0)
    model = build_model("vae-compact" if reduce else "vae",
                        {"channels": [4, 8], "z": 6, "reduce": reduce})
    if hasattr(model, "materialize"):
        model.materialize()
    assert "6 of z = 6" in model.pca_init(frames)
    model.eval()
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        feats = model.down(images)
        mu, logvar = model._moments(images)
        target = torch.logit(feats.clamp(1e-4, 1 - 1e-4))
        if reduce:
            target = model.reduce(feats)
        residual = target.flatten(1) - model.fc_dec(mu)
    assert torch.allclose(mu.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(mu.T @ mu / len(frames), torch.eye(6), atol=1e-3)
    assert torch.allclose(logvar, torch.full_like(logvar, float(np.log(0.01))))
    assert (residual.T @ mu).abs().max() < 1e-2 * residual.abs().sum() / residual.numel() * len(frames) + 1e-3


def test_retrained_weights_keep_the_old_ones_so_old_files_still_decode(tmp_path, clip, tiny_weights):
    """A .pcz names its weights by sha256. Shipping new weights for an id (zoo.supersede,
    as tools/ship_weights.py does) keeps the old file as a superseded entry: files made
    with it decode as before, new files use the new weights, and only a sha256 asks for
    a superseded entry."""
    import shutil

    import torch

    import pacodec
    from pacodec import api

    weights = tmp_path / "w"
    shutil.copytree(tiny_weights, weights)
    old_file = tmp_path / "old.pcz"
    api.encode(clip, old_file, model="tiny-conv", weights_dir=weights, max_frames=3)
    with pacodec.open(old_file, weights_dir=weights) as reader:
        before = [np.array(f) for f in reader]
    old = zoo.find("tiny-conv", weights)

    model, _ = zoo.load("tiny-conv", weights)  # "retrained": one weight moved
    with torch.no_grad():
        next(model.parameters()).add_(0.05)
    data = zoo.serialize(model)
    new_sha = __import__("hashlib").sha256(data).hexdigest()
    assert zoo.supersede(weights, ["tiny-conv"], new_sha) == ["tiny-conv"]
    assert zoo.supersede(weights, ["tiny-conv"], new_sha) == []  # once
    (weights / old.entry["file"]).write_bytes(data)
    zoo.write_manifest_entry(weights, {**old.entry, "sha256": new_sha})

    assert zoo.find("tiny-conv", weights).sha256 == new_sha
    kept = zoo.find("tiny-conv", weights, old.sha256)
    assert kept.sha256 == old.sha256 and kept.entry["superseded"] and kept.path != old.path
    assert zoo.sha256_of(kept.path) == old.sha256
    with pacodec.open(old_file, weights_dir=weights) as reader:
        assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, reader))
    facts = api.encode(clip, tmp_path / "new.pcz", model="tiny-conv", weights_dir=weights, max_frames=3)
    assert facts["models"][0]["weights_sha256"] == new_sha
