"""Probe sets: the default photographs, folders, `datasets` sets, preprocessing and bad input."""

from __future__ import annotations

import tarfile
from importlib import resources

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from bench.errors import ProbeSetError
from bench.probes import load_probe_set, select_indices
from bench.probes.sources import default_manifest
from bench.probes.transform import eval_transform
from bench.registry.schema import DataConfig

TINY = DataConfig(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear",
                  mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
RESNET = DataConfig(input_size=(3, 224, 224), crop_pct=0.95, interpolation="bicubic",
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _png(path, size=(40, 30), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": (3,), "RGBA": (4,)}.get(mode, ())
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8))
    image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


# --- default set ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_224():
    return load_probe_set("default", RESNET)


def test_default_set_is_32_plus_real_photographs(default_224):
    ps = default_224
    assert ps.id == "photos-v1" and len(ps) >= 32 and ps.labels is None
    assert ps.images.shape == (len(ps), 3, 224, 224) and ps.images.dtype == torch.float32
    assert ps.images.min() >= 0 and ps.images.max() <= 1
    assert len(set(ps.names)) == len(ps)
    # no two images alike (crops really differ from their source)
    flat = ps.images.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(len(ps)) * 1e9
    assert distances.min() > 1.0


def test_default_manifest_documents_every_source():
    manifest = default_manifest()
    sources = manifest["sources"]
    assert {"file", "sha256", "size", "license", "credit"} <= set().union(*map(set, sources.values()))
    for source in sources.values():
        assert source["license"] in {"CC0-1.0", "public-domain", "no-known-copyright"}
        assert source["credit"]
    for image in manifest["images"]:
        width, height = sources[image["source"]]["size"]
        if image["crop"]:
            left, top, right, bottom = image["crop"]
            assert 0 <= left < right <= width and 0 <= top < bottom <= height


def test_hash_identifies_images_not_the_model(default_224):
    small = load_probe_set("default", TINY)
    assert small.hash == default_224.hash and small.images.shape[-1] == 32
    assert load_probe_set("default", TINY, limit=5).hash != small.hash


def test_preprocessing_is_timms_eval_transform_without_normalize(default_224):
    """Our pipeline, then timm's Normalize, is timm's eval transform bit for bit."""
    full = create_transform(**RESNET.to_timm(), is_training=False)
    ours = eval_transform(RESNET)
    assert [type(t) for t in ours.transforms] == [type(t) for t in full.transforms[:-1]]
    assert isinstance(full.transforms[-1], T.Normalize)
    with resources.as_file(resources.files("skimage") / "data" / "coffee.png") as path:
        photo = Image.open(path).convert("RGB")
    expected = full(photo)
    assert torch.equal(T.Normalize(RESNET.mean, RESNET.std)(ours(photo)), expected)
    loaded = default_224.images[default_224.names.index("coffee")]
    assert torch.equal(T.Normalize(RESNET.mean, RESNET.std)(loaded), expected)


def test_resize_and_centre_crop_follow_the_data_config(tmp_path):
    _png(tmp_path / "wide.png", size=(300, 100))
    ps = load_probe_set(f"folder:{tmp_path}", RESNET)
    assert ps.images.shape == (1, 3, 224, 224)
    squash = RESNET.model_copy(update={"crop_mode": "squash", "input_size": (3, 64, 64)})
    assert load_probe_set(f"folder:{tmp_path}", squash).images.shape == (1, 3, 64, 64)


# --- folder: ----------------------------------------------------------------------------

def test_flat_folder_converts_every_mode_to_rgb(tmp_path):
    for i, mode in enumerate(["RGB", "RGBA", "L", "P"]):
        _png(tmp_path / f"{i:02d}_{mode}.png", mode=mode, seed=i)
    ps = load_probe_set(f"folder:{tmp_path}", TINY)
    assert ps.id == f"folder:{tmp_path.name}" and ps.labels is None and ps.class_names is None
    assert ps.names == ["00_RGB.png", "01_RGBA.png", "02_L.png", "03_P.png"]
    assert ps.images.shape == (4, 3, 32, 32)
    grey = ps.images[2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_class_folders_give_labels_and_a_balanced_limit(tmp_path):
    for c, count in {"cat": 3, "dog": 2, "eel": 4}.items():
        for i in range(count):
            _png(tmp_path / c / f"{i}.png", seed=i + 10 * count)
    ps = load_probe_set(f"folder:{tmp_path}", TINY)
    assert ps.class_names == ["cat", "dog", "eel"]
    assert ps.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    limited = load_probe_set(f"folder:{tmp_path}", TINY, limit=5)
    assert limited.labels.tolist() == [0, 0, 1, 1, 2]
    assert limited.id == f"folder:{tmp_path.name}[n=5]"
    assert torch.equal(limited.images, ps.images[[0, 1, 3, 4, 5]])


def test_select_indices():
    assert select_indices(5, None, None) == [0, 1, 2, 3, 4]
    assert select_indices(5, None, 2) == [0, 1]
    assert select_indices(6, [2, 2, 0, 1, 1, 1], 4) == [0, 2, 3, 4]
    assert select_indices(4, [0, 0, 0, 1], 3) == [0, 1, 3]
    assert select_indices(3, [0, 1, 1], 10) == [0, 1, 2]


@pytest.mark.parametrize("setup, spec, message", [
    (lambda d: None, "folder:{d}/missing", "does not exist"),
    (lambda d: (d / "empty").mkdir(), "folder:{d}/empty", "has no images"),
    (lambda d: (d / "notes.txt").write_text("x"), "folder:{d}", "has no images"),
    (lambda d: (d / "broken.png").write_bytes(b"\x89PNG not really"), "folder:{d}",
     "cannot read image broken.png"),
    (lambda d: (_png(d / "a.png"), _png(d / "cls" / "b.png")), "folder:{d}",
     "mixes images and class subfolders"),
    (lambda d: None, "webcam:0", "unknown probe set 'webcam:0'"),
    (lambda d: None, "folder:", "unknown probe set"),
])
def test_bad_probe_sets_are_one_line_errors(tmp_path, setup, spec, message):
    setup(tmp_path)
    with pytest.raises(ProbeSetError) as err:
        load_probe_set(spec.format(d=tmp_path), TINY)
    line = err.value.one_line()
    assert message in line and "\n" not in line and err.value.hint


def test_limit_must_be_positive():
    with pytest.raises(ProbeSetError, match="at least 1"):
        load_probe_set("default", TINY, limit=0)


# --- hf: -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub_layout_dataset(tmp_path_factory):
    """A tiny labelled dataset in the Hub's parquet layout (data/<split>-0000n-of-0000m.parquet)."""
    import datasets

    root = tmp_path_factory.mktemp("hub_dataset")
    (root / "data").mkdir()
    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(),
                                  "fine_label": datasets.ClassLabel(names=["ant", "bee", "cow"]),
                                  "caption": datasets.Value("string")})
    for split, n in {"train": 9, "test": 6}.items():
        images = [Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)) for i in range(n)]
        ds = datasets.Dataset.from_dict(
            {"img": images, "fine_label": [i % 3 for i in range(n)], "caption": ["x"] * n},
            features=features)
        ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def test_hf_local_dataset_detects_image_and_label_columns(hub_layout_dataset):
    ps = load_probe_set(f"hf:{hub_layout_dataset}", TINY)
    assert ps.id == f"hf:{hub_layout_dataset.name}:test"  # test preferred over train
    assert ps.images.shape == (6, 3, 32, 32)
    assert ps.class_names == ["ant", "bee", "cow"] and ps.labels.tolist() == [0, 1, 2, 0, 1, 2]
    train = load_probe_set(f"hf:{hub_layout_dataset}:train", TINY, limit=4)
    assert train.id == f"hf:{hub_layout_dataset.name}:train[n=4]"
    assert train.labels.tolist() == [0, 1, 2, 0] and train.names == [f"train[{i}]" for i in range(4)]
    assert train.hash != ps.hash


def test_hf_missing_split_lists_the_splits(hub_layout_dataset):
    with pytest.raises(ProbeSetError, match="no split 'validation'") as err:
        load_probe_set(f"hf:{hub_layout_dataset}:validation", TINY)
    assert "train" in err.value.one_line() and "test" in err.value.one_line()


@pytest.mark.timeout(60)
def test_hf_dataset_not_available_offline():
    with pytest.raises(ProbeSetError) as err:
        load_probe_set("hf:someone/no-such-dataset-xyz:test", TINY)
    assert "cannot load dataset 'someone/no-such-dataset-xyz'" in err.value.one_line()


# --- real images (offline assets) ----------------------------------------------------------

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.mark.assets
def test_cifar10_jpeg_tarball_reads_as_a_labelled_folder(assets, tmp_path):
    with tarfile.open(assets / "images/cifar10_test_jpeg_q75/cifar10_test_jpeg_q75.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    ps = load_probe_set(f"folder:{tmp_path / 'test'}", TINY, limit=50)
    assert ps.class_names == CIFAR10
    assert torch.bincount(ps.labels).tolist() == [5] * 10
    assert ps.images.shape == (50, 3, 32, 32)
    assert ps.names[:5] == [f"airplane/{i:04d}.jpg" for i in range(5)]  # first of each class
