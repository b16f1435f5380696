"""The model registry: one YAML file per checkpoint, named ``<arch>.<tag>.yaml``.

:func:`load_registry` reads and validates a registry folder (``$BENCH_REGISTRY``,
else the repository's top-level ``registry/``), :func:`resolve` turns what a user
types (``resnet18`` or ``resnet18.a1_in1k``) into an entry, and
:func:`validate_files` reports every problem of a set of files at once, for
``bench registry validate`` and CI.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import ValidationError

import bench
from bench.errors import RegistryError, UnknownModelError
from bench.registry.schema import DataConfig, RegistryEntry

__all__ = [
    "DataConfig",
    "RegistryEntry",
    "default_registry_dir",
    "load_registry",
    "resolve",
    "validate_files",
]


def default_registry_dir() -> Path:
    """``$BENCH_REGISTRY``, else the ``registry/`` folder at the top of the repository."""
    env = os.environ.get("BENCH_REGISTRY")
    return Path(env) if env else Path(bench.__file__).resolve().parents[1] / "registry"


def load_registry(directory: str | os.PathLike | None = None) -> dict[str, RegistryEntry]:
    """All entries of a registry folder by id, in file-name order.

    Raises :class:`RegistryError` naming the file and the field at the first
    malformed file, duplicate id or file named differently from its id.
    """
    folder = Path(directory) if directory is not None else default_registry_dir()
    files = registry_files(folder)
    entries: dict[str, RegistryEntry] = {}
    origin: dict[str, Path] = {}
    for path in files:
        entry, problems = _read_entry(path)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise RegistryError(problems[0] + more,
                                f"fix the file, then check with `bench registry validate {path}`")
        if entry.id in entries:
            raise RegistryError(
                f"{path}: id: '{entry.id}' is already defined in {origin[entry.id]}",
                "keep one file per checkpoint")
        entries[entry.id] = entry
        origin[entry.id] = path
    return entries


def registry_files(folder: Path) -> list[Path]:
    """The ``*.yaml`` files of a registry folder, sorted; an error when there are none."""
    if not folder.is_dir():
        raise RegistryError(f"registry folder {folder} does not exist",
                            "set BENCH_REGISTRY to a folder of registry YAML files")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RegistryError(f"registry folder {folder} has no .yaml files",
                            "add entries with `bench registry add --from-timm NAME`")
    return files


def resolve(name: str, registry: dict[str, RegistryEntry] | None = None) -> RegistryEntry:
    """The entry a user means by ``name``.

    An exact ``arch.tag`` id is returned as is. A bare architecture name resolves to
    timm's default pretrained tag for it (what ``timm.create_model(name,
    pretrained=True)`` would load) when that checkpoint is registered, else to the
    first registered checkpoint of that architecture. Anything else raises
    :class:`UnknownModelError` with the closest known names.
    """
    registry = load_registry() if registry is None else registry
    if name in registry:
        return registry[name]
    same_arch = [e for e in registry.values() if e.timm_name == name]
    if same_arch:
        default = f"{name}.{_timm_default_tag(name)}"
        return registry.get(default, same_arch[0])
    raise _unknown(name, registry)


def _timm_default_tag(arch: str) -> str | None:
    from bench.registry.from_timm import timm_pretrained_cfg

    cfg = timm_pretrained_cfg(arch)
    return cfg.tag if cfg is not None else None


def _unknown(name: str, registry: dict[str, RegistryEntry]) -> UnknownModelError:
    candidates = sorted(set(registry) | {e.timm_name for e in registry.values()})
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    hint += ("`bench registry list` shows every registered model; "
             "`bench registry add --from-timm NAME` registers a timm checkpoint")
    return UnknownModelError(f"unknown model '{name}'", hint)


def validate_files(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Every problem of the given registry files, one line each (empty when all is well).

    Checks the schema, that the file is named ``<id>.yaml``, that ids are unique
    across the files, that the timm architecture exists (after the project's own
    architectures are registered) and that timm knows the pretrained tag.
    """
    import timm

    from bench.registry.from_timm import timm_pretrained_cfg  # also registers bench.models

    known_archs = set(timm.list_models())
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        entry, file_problems = _read_entry(path)
        problems += file_problems
        if entry is None:
            continue
        if entry.id in seen:
            problems.append(f"{path}: id: '{entry.id}' is already defined in {seen[entry.id]}")
        seen.setdefault(entry.id, path)
        if entry.timm_name not in known_archs:
            close = difflib.get_close_matches(entry.timm_name, known_archs, n=3)
            problems.append(f"{path}: timm_name: '{entry.timm_name}' is not a timm model"
                            + (f" (closest: {', '.join(close)})" if close else ""))
        elif timm_pretrained_cfg(entry.id) is None:
            problems.append(f"{path}: tag: timm has no pretrained tag '{entry.tag}' "
                            f"for {entry.timm_name}")
    return problems


def _read_entry(path: Path) -> tuple[RegistryEntry | None, list[str]]:
    """Parse and validate one file: the entry, or None and the problems naming file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        return None, [f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}"]
    if not isinstance(data, dict):
        return None, [f"{path}: expected a mapping of fields, got {type(data).__name__}"]
    try:
        entry = RegistryEntry.model_validate(data)
    except ValidationError as exc:
        return None, [f"{path}: {_field(err['loc'])}: {err['msg']}" for err in exc.errors()]
    if path.name != f"{entry.id}.yaml":
        return entry, [f"{path}: id: file must be named '{entry.id}.yaml' after its id"]
    return entry, []


def _field(loc: tuple) -> str:
    # The only entry-level rule (no loc of its own) is that id == timm_name.tag.
    return ".".join(str(part) for part in loc) or "id"
