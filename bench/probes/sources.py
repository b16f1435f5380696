"""Where probe images come from: the default photographs, an image folder, a ``datasets`` set.

Each source is read into a :class:`Catalog`: the names, optional labels and class
names of its images, and a reader for the encoded bytes of image i. Nothing is
decoded until the images are chosen, so ``limit`` on a large dataset reads only
what it keeps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from bench.errors import ProbeSetError, first_line

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
FOLDER_HINT = "give folder:PATH, a folder of images, flat or with one subfolder per class"


@dataclass
class Catalog:
    """The images of a probe set before decoding.

    ``crops`` holds a (left, top, right, bottom) pixel box per image, or None for
    the whole image.
    """

    id: str
    names: list[str]
    read: Callable[[int], bytes]
    labels: list[int] | None = None
    class_names: list[str] | None = None
    crops: list[tuple[int, int, int, int] | None] | None = None


# --- the default set ---------------------------------------------------------------

def default_catalog() -> Catalog:
    """The photographs of ``default_manifest.json``, read from scikit-image's wheel."""
    manifest = default_manifest()
    sources = manifest["sources"]
    images = manifest["images"]

    def read(i: int) -> bytes:
        return _skimage_file(sources[images[i]["source"]]["file"],
                             sources[images[i]["source"]]["sha256"])

    return Catalog(
        id=manifest["id"],
        names=[im["name"] for im in images],
        read=read,
        crops=[tuple(im["crop"]) if im["crop"] else None for im in images],
    )


@cache
def default_manifest() -> dict:
    return json.loads(resources.files("bench.probes").joinpath("default_manifest.json").read_text())


@cache
def _skimage_file(name: str, sha256: str) -> bytes:
    folder = resources.files("skimage") / "data"
    try:
        data = folder.joinpath(name).read_bytes()
    except FileNotFoundError as exc:
        raise ProbeSetError(f"scikit-image's sample photograph {name} is missing",
                            "reinstall scikit-image (pip install --force-reinstall scikit-image)") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ProbeSetError(
            f"scikit-image's {name} differs from the one the default probe set was built with",
            "install a scikit-image release that ships the same file (0.22 to 0.26 do), "
            "or pass an explicit probe set with --probes")
    return data


# --- folder:PATH -------------------------------------------------------------------

def folder_catalog(path: str) -> Catalog:
    """A flat folder of images, or one subfolder per class (ImageFolder layout), sorted by name."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ProbeSetError(f"probe folder {root} does not exist", FOLDER_HINT)
    flat = _images_in(root, recursive=False)
    classes = [(d.name, _images_in(d, recursive=True))
               for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    classes = [(name, files) for name, files in classes if files]
    if flat and classes:
        raise ProbeSetError(f"probe folder {root} mixes images and class subfolders",
                            "put every image in a class subfolder, or use a flat folder")
    if classes:
        files = [f for _, class_files in classes for f in class_files]
        labels = [i for i, (_, class_files) in enumerate(classes) for _ in class_files]
        class_names = [name for name, _ in classes]
    elif flat:
        files, labels, class_names = flat, None, None
    else:
        raise ProbeSetError(f"probe folder {root} has no images "
                            f"({', '.join(sorted(IMAGE_SUFFIXES))})", FOLDER_HINT)
    return Catalog(
        id=f"folder:{root.resolve().name}",
        names=[str(f.relative_to(root)) for f in files],
        read=lambda i: files[i].read_bytes(),
        labels=labels,
        class_names=class_names,
    )


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


# --- hf:DATASET[:SPLIT] ------------------------------------------------------------

SPLIT_PREFERENCE = ("validation", "test", "train")


def hf_catalog(spec: str) -> Catalog:
    """A ``datasets`` dataset (Hub id or local folder), its first ``Image`` column and optional
    ``ClassLabel`` column. Without a split: validation, else test, else train, else the first."""
    import datasets

    name, split = _split_spec(spec)
    hint = ("check the dataset id; with HF_DATASETS_OFFLINE=1 only datasets already in the "
            "local cache or local folders in the Hub's format (hf:PATH) load")
    try:
        splits = datasets.get_dataset_split_names(name)
        split = split or next((s for s in SPLIT_PREFERENCE if s in splits), splits[0])
        if split not in splits:
            raise ProbeSetError(f"dataset '{name}' has no split '{split}'",
                                f"pick one of: {', '.join(splits)}")
        ds = datasets.load_dataset(name, split=split)
    except ProbeSetError:
        raise
    except Exception as exc:  # offline, missing, malformed: each raises its own type
        raise ProbeSetError(f"cannot load dataset '{name}': {first_line(exc)}", hint) from exc
    image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    if image_col is None:
        raise ProbeSetError(f"dataset '{name}' has no image column",
                            "give a dataset with a datasets.Image feature")
    label_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)), None)
    raw = ds.cast_column(image_col, datasets.Image(decode=False))

    def read(i: int) -> bytes:
        cell = raw[i][image_col]
        if cell.get("bytes"):
            return cell["bytes"]
        return Path(cell["path"]).read_bytes()

    label = ds.features[label_col] if label_col else None
    short = Path(name).name if Path(name).exists() else name
    return Catalog(
        id=f"hf:{short}:{split}",
        names=[f"{split}[{i}]" for i in range(len(ds))],
        read=read,
        labels=list(ds[label_col]) if label else None,
        class_names=list(label.names) if label else None,
    )


def _split_spec(spec: str) -> tuple[str, str | None]:
    """``NAME[:SPLIT]``; a part after the last colon is a split only if it has no slash."""
    name, sep, split = spec.rpartition(":")
    if sep and name and split and "/" not in split and "\\" not in split:
        return name, split
    return spec, None
