"""The project's own architectures and the three ways of loading weights."""

from __future__ import annotations

import hashlib
import math
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file

import bench.models  # noqa: F401
from bench.errors import WeightsError
from bench.models.cifar_resnet import ZeroPadShortcut
from bench.models.loading import load_model, scored_model
from bench.models.scored import ScoredModel
from bench.registry import load_registry


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def c20(registry):
    return registry["cifar_resnet20.akamaster_c10"]


# --- architectures ----------------------------------------------------------------------

@pytest.mark.parametrize("depth, millions", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)])
def test_cifar_resnet_parameter_counts_match_the_paper(depth, millions):
    model = timm.create_model(f"cifar_resnet{depth}")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(32)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


@pytest.mark.parametrize("name, stage_shapes", [
    ("cifar_resnet20", [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]),
    ("gih_mlp", [(100,), (100,)]),
])
def test_timm_interface(name, stage_shapes):
    model = timm.create_model(name, num_classes=7, img_size=32).eval()
    x = torch.rand(3, 3, 32, 32)
    logits = model(x)
    feats = model.forward_features(x)
    final, inter = model.forward_intermediates(x)
    assert logits.shape == (3, 7) and model.num_classes == 7
    assert torch.allclose(final, feats) and torch.allclose(model.forward_head(feats), logits)
    assert [tuple(t.shape[1:]) for t in inter] == stage_shapes
    assert [i["num_chs"] for i in model.feature_info] == [s[0] for s in stage_shapes]
    assert torch.allclose(inter[-1], feats)
    assert model.forward_head(feats, pre_logits=True).shape == (3, model.num_features)
    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(last_two, inter[-2:], strict=True))
    first = model.forward_intermediates(x, indices=[0], stop_early=True)
    assert torch.equal(first[0], inter[0]) and len(first[1]) == 1
    model.reset_classifier(2)
    assert model(x).shape == (3, 2) and model.get_classifier().out_features == 2


@pytest.mark.parametrize("name", ["cifar_resnet20", "gih_mlp"])
def test_scored_model_stages(name):
    model = timm.create_model(name).eval()
    scored = ScoredModel(model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 32, 32)
    stages = scored.stages(x)
    names = [n for n, _ in stages]
    assert names == scored.stage_names() and names[-2:] == ["pre_logits", "logits"]
    assert torch.allclose(stages[-1][1], scored(x), atol=1e-6)
    assert torch.allclose(stages[-2][1], scored.features(x))


def test_cifar_resnet_rejects_non_rgb():
    with pytest.raises(ValueError, match="in_chans"):
        timm.create_model("cifar_resnet20", in_chans=1)


def test_reference_mlp_first_layer_is_scaled_gaussian():
    model = timm.create_model("gih_mlp")
    w = model.fc1.weight.detach().double().flatten()
    assert model.fc1.weight.shape == (100, 3072) and model.fc2.weight.shape == (100, 100)
    assert not model.fc1.bias.any()
    # 307,200 draws: the sample std is within 0.5% of 1/sqrt(3072) with overwhelming odds,
    # and Gaussian kurtosis is 3 (a uniform init would give 1.8).
    assert w.std().item() == pytest.approx(1 / math.sqrt(3072), rel=5e-3)
    assert abs(w.mean().item()) < 5 * w.std().item() / math.sqrt(w.numel())
    kurtosis = ((w - w.mean()) ** 4).mean() / w.var() ** 2
    assert kurtosis.item() == pytest.approx(3.0, abs=0.05)
    assert isinstance(model.act1, torch.nn.GELU) and isinstance(model.act2, torch.nn.GELU)


# --- random weights ------------------------------------------------------------------------

def test_random_weights_are_seeded_and_leave_global_rng_alone(c20):
    state = torch.get_rng_state()
    a, b, c = (load_model(c20, "random", seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.weights == "random" and a.weights_ref == "timm-init" and a.weights_hash == "random-seed1"
    assert _same(a.net, b.net.state_dict())
    assert not torch.equal(a.net.conv1.weight, c.net.conv1.weight)


def test_scored_model_uses_the_entry_normalization(c20):
    loaded = load_model(c20, "random")
    f = scored_model(c20, loaded)
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(c20.data_config.mean).view(1, 3, 1, 1)
    std = torch.tensor(c20.data_config.std).view(1, 3, 1, 1)
    assert not f.training and not any(p.requires_grad for p in f.parameters())
    assert torch.allclose(f(x), loaded.net((x - mean) / std), atol=1e-6)


# --- weights from a file ------------------------------------------------------------------

def _state(entry, seed=5):
    return load_model(entry, "random", seed=seed).net.state_dict()


def _same(net, state):
    return all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_safetensors_file_loads_strictly_with_its_sha256(c20, tmp_path):
    state = _state(c20)
    path = tmp_path / "c20.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_model(c20, str(path))
    assert loaded.weights == "file" and loaded.weights_ref == "c20.safetensors"
    assert loaded.weights_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert _same(loaded.net, state)


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "best_prec1": 90.0},
    lambda s: {"model": s, "epoch": 3},
])
def test_torch_checkpoint_wrappers_and_module_prefix(c20, tmp_path, wrap):
    state = _state(c20)
    path = tmp_path / "c20.pth"
    torch.save(wrap(state), path)
    assert _same(load_model(c20, str(path)).net, state)


def test_missing_file(c20, tmp_path):
    with pytest.raises(WeightsError) as err:
        load_model(c20, str(tmp_path / "nope.safetensors"))
    assert "not found" in err.value.one_line() and "--weights random" in err.value.one_line()


@pytest.mark.parametrize("name, content", [
    ("bad.safetensors", b"\x00" * 64),
    ("bad.pth", b"this is not a checkpoint"),
])
def test_corrupt_file(c20, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=f"cannot read weights file {name}"):
        load_model(c20, str(path))


def test_truncated_checkpoint(c20, tmp_path):
    path = tmp_path / "c20.pth"
    torch.save(_state(c20), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="cannot read weights file c20.pth"):
        load_model(c20, str(path))


class _Payload:
    """Unpickling this runs code: it must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_never_executed(c20, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f, protocol=2)
    with pytest.raises(WeightsError, match="cannot read weights file evil.pth"):
        load_model(c20, str(path))
    assert not marker.exists()


def test_checkpoint_of_another_architecture(registry, c20, tmp_path):
    path = tmp_path / "c32.safetensors"
    save_file(_state(registry["cifar_resnet32.akamaster_c10"]), str(path))
    with pytest.raises(WeightsError) as err:
        load_model(c20, str(path))
    line = err.value.one_line()
    assert "c32.safetensors does not fit cifar_resnet20.akamaster_c10" in line
    # ResNet-32 has two more blocks per stage: 6 blocks of 2 convs + 2 BNs of 5 tensors each.
    assert "0 keys missing, 72 unexpected, 0 shape mismatches" in line
    assert "unexpected 'layer1.3." in line


def test_checkpoint_with_other_class_count(c20, tmp_path):
    state = _state(c20)
    state["linear.weight"] = torch.zeros(100, 64)
    state["linear.bias"] = torch.zeros(100)
    del state["layer3.2.bn2.running_var"]
    path = tmp_path / "c100.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as err:
        load_model(c20, str(path))
    line = err.value.one_line()
    assert "1 keys missing, 0 unexpected, 2 shape mismatches" in line
    assert "'linear.weight' is (100, 64) instead of (10, 64)" in line


# --- pretrained from the Hub ----------------------------------------------------------------

@pytest.mark.timeout(20)
def test_pretrained_offline_fails_at_once_with_the_ways_on(registry, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        load_model(registry["resnet18.a1_in1k"])
    line = err.value.one_line()
    assert "--weights random" in line and "--weights PATH" in line and "\n" not in line


@pytest.mark.timeout(20)
def test_pretrained_unreachable_hub_is_treated_as_offline(registry, monkeypatch, tmp_path):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.HfApi.model_info", unreachable)
    with pytest.raises(WeightsError, match="unreachable"):
        load_model(registry["resnet18.a1_in1k"])


def test_pretrained_from_the_local_hub_cache(c20, monkeypatch, tmp_path):
    """Offline, a checkpoint already in the Hub cache loads through timm, hashed by its blob name."""
    entry = c20.model_copy(update={"hub_id": "someone/cifar-resnet20"})
    state = _state(c20)
    blob = tmp_path / "blob.safetensors"
    save_file(state, str(blob))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--cifar-resnet20"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "snapshots" / revision).mkdir(parents=True)
    blob.rename(repo / "blobs" / sha)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision / "model.safetensors").symlink_to(repo / "blobs" / sha)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    loaded = load_model(entry)
    assert loaded.weights == "pretrained"
    assert loaded.weights_ref == f"someone/cifar-resnet20@{revision}"
    assert loaded.weights_hash == sha
    assert _same(loaded.net, state)


def test_entry_without_hub_weights(c20):
    with pytest.raises(WeightsError, match="no weights on the Hugging Face Hub"):
        load_model(c20, "pretrained")


# --- real checkpoints (offline assets) -----------------------------------------------------

def _samples(assets, tmp_path, prefix):
    """The labelled foolbox samples ``<prefix>_NN_LABEL.*`` as a flat folder, and their labels."""
    folder = tmp_path / prefix
    folder.mkdir()
    for f in sorted((assets / "images/foolbox_samples").glob(f"{prefix}_*")):
        (folder / f.name).symlink_to(f)
    return folder


def _labels(names):
    return torch.tensor([int(n.rsplit(".", 1)[0].split("_")[2]) for n in names])


@pytest.mark.assets
def test_real_efficientnet_lite0_through_weights_path(registry, assets, tmp_path):
    """Probe preprocessing + ScoredModel normalization reproduce timm's own eval pipeline."""
    from PIL import Image
    from timm.data import create_transform

    from bench.probes import load_probe_set

    entry = registry["tf_efficientnet_lite0.in1k"]
    weights = assets / "weights/tf_efficientnet_lite0_in1k/tf_efficientnet_lite0.timm.safetensors"
    loaded = load_model(entry, str(weights))
    assert loaded.weights_hash.startswith("3843") and loaded.weights_hash.endswith("0191")
    f = scored_model(entry, loaded)
    probes = load_probe_set(f"folder:{_samples(assets, tmp_path, 'imagenet')}", entry.data_config)
    with torch.no_grad():
        logits = f(probes.images)
    assert (logits.argmax(1) == _labels(probes.names)).sum().item() == 18  # as the assets README
    reference = timm.create_model(entry.id, pretrained=True,
                                  pretrained_cfg_overlay=dict(file=str(weights))).eval()
    transform = create_transform(**entry.data_config.to_timm(), is_training=False)
    batch = torch.stack([transform(Image.open(tmp_path / "imagenet" / n).convert("RGB"))
                         for n in probes.names])
    with torch.no_grad():
        assert torch.allclose(logits, reference(batch), atol=1e-4)


@pytest.mark.assets
@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_akamaster_checkpoints_load_strictly(registry, assets, depth):
    entry = registry[f"cifar_resnet{depth}.akamaster_c10"]
    [path] = (assets / "weights/akamaster_resnet_cifar10").glob(f"resnet{depth}-*.th")
    loaded = load_model(entry, str(path))
    reported = torch.load(path, map_location="cpu", weights_only=True)["best_prec1"]
    assert f"{float(reported):.2f}%" in entry.notes
    assert loaded.weights_hash == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.assets
def test_cifar_resnet20_classifies_the_lossless_cifar10_samples(registry, assets, tmp_path):
    from bench.probes import load_probe_set

    entry = registry["cifar_resnet20.akamaster_c10"]
    [path] = (assets / "weights/akamaster_resnet_cifar10").glob("resnet20-*.th")
    f = scored_model(entry, load_model(entry, str(path)))
    probes = load_probe_set(f"folder:{_samples(assets, tmp_path, 'cifar10')}", entry.data_config)
    assert probes.images.shape == (20, 3, 32, 32)
    with torch.no_grad():
        correct = (f(probes.images).argmax(1) == _labels(probes.names)).sum().item()
    assert correct >= 18  # 91.8% test accuracy: 18.4 of 20 expected
