"""The model registry: every committed entry, resolution of names, and bad registry files."""

from __future__ import annotations

import json
import shutil

import pytest
import timm
import timm.models
import yaml
from timm.data import resolve_data_config

import bench.models  # noqa: F401  (registers cifar_resnet*, gih_mlp)
from bench.cli import main
from bench.errors import RegistryError, UnknownModelError
from bench.registry import default_registry_dir, load_registry, resolve, validate_files
from bench.registry.from_timm import entry_from_timm, param_count
from bench.store.schema import MODELS

REGISTRY = default_registry_dir()
FILES = sorted(REGISTRY.glob("*.yaml"))


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_registry_file_validates(path):
    assert validate_files([path]) == []


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_entry_data_config_is_timms_eval_config(path, registry):
    """The probe preprocessing of SPEC 1 is timm's; the registry must not drift from it."""
    entry = registry[path.stem]
    cfg = timm.models.get_pretrained_cfg(entry.id)
    expected = resolve_data_config(pretrained_cfg=cfg.to_dict())
    got = entry.data_config.model_dump()
    assert {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in got.items()} == {
        k: (tuple(expected[k]) if isinstance(expected[k], (list, tuple)) else expected[k])
        for k in got}
    assert entry.num_classes == cfg.num_classes
    assert entry.hub_id == cfg.hf_hub_id


def test_seed_registry_covers_the_families(registry):
    checkpoints = [e for e in registry.values() if e.scope == "checkpoint"]
    assert len(checkpoints) >= 30
    assert len({e.family for e in checkpoints}) >= 12
    for required in ("resnet18.a1_in1k", "tf_efficientnet_lite0.in1k", "gih_mlp.init",
                     *(f"cifar_resnet{d}.akamaster_c10" for d in (20, 32, 44, 56))):
        assert required in registry
    assert registry["gih_mlp.init"].scope == "architecture"
    assert all(e.imagenet_top1 is None for e in registry.values() if e.num_classes != 1000)


@pytest.mark.parametrize("name", ["resnet18.a1_in1k", "cifar_resnet20.akamaster_c10", "gih_mlp.init"])
def test_param_count_matches_the_built_model(name, registry):
    entry = registry[name]
    model = timm.create_model(entry.id, pretrained=False, num_classes=entry.num_classes)
    assert entry.param_count == sum(p.numel() for p in model.parameters())


def test_model_row_fills_the_models_table(registry):
    row = registry["resnet18.a1_in1k"].model_row()
    assert list(row) == MODELS.names
    assert row["input_size"] == 224 and row["model_id"] == "resnet18.a1_in1k"


# --- resolve -------------------------------------------------------------------------

def test_bare_arch_resolves_to_timms_default_tag(registry):
    assert timm.models.get_pretrained_cfg("resnet18").tag == "a1_in1k"
    assert resolve("resnet18", registry).id == "resnet18.a1_in1k"


def test_bare_arch_without_its_default_tag_takes_a_registered_one(registry):
    # timm's default for resnet34 is a1_in1k, which is not registered; tv_in1k is.
    assert "resnet34.a1_in1k" not in registry
    assert resolve("resnet34", registry).id == "resnet34.tv_in1k"


def test_exact_id_resolves(registry):
    assert resolve("resnet18.tv_in1k", registry).id == "resnet18.tv_in1k"
    assert resolve("cifar_resnet20", registry).id == "cifar_resnet20.akamaster_c10"


@pytest.mark.parametrize("typo", ["resnt18", "resnet18.a1_in1", "Resnet18"])
def test_unknown_name_lists_closest_matches(typo, registry):
    with pytest.raises(UnknownModelError) as err:
        resolve(typo, registry)
    line = err.value.one_line()
    assert f"unknown model '{typo}'" in line and "resnet18" in line
    assert "\n" not in line


def test_unknown_name_without_close_match(registry):
    with pytest.raises(UnknownModelError) as err:
        resolve("zzzzzz", registry)
    assert "did you mean" not in err.value.one_line()
    assert "bench registry list" in err.value.one_line()


# --- bad files ------------------------------------------------------------------------

@pytest.fixture
def good_yaml():
    return yaml.safe_load((REGISTRY / "resnet18.a1_in1k.yaml").read_text())


def _write(folder, name, data):
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("change, field", [
    (lambda d: d.pop("license"), "license"),
    (lambda d: d["data_config"].update(crop_pct=1.5), "data_config.crop_pct"),
    (lambda d: d["data_config"].update(input_size=[1, 224, 224]), "data_config.input_size.0"),
    (lambda d: d.update(num_classes="many"), "num_classes"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.update(tag="a2_in1k"), "id"),
])
def test_malformed_entry_names_file_and_field(tmp_path, good_yaml, change, field):
    change(good_yaml)
    path = _write(tmp_path, "resnet18.a1_in1k.yaml", good_yaml)
    problems = validate_files([path])
    assert problems and all(p.startswith(f"{path}: ") for p in problems)
    assert any(p.startswith(f"{path}: {field}: ") for p in problems), problems
    with pytest.raises(RegistryError) as err:
        load_registry(tmp_path)
    assert str(path) in err.value.one_line() and f": {field}: " in err.value.one_line()


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.yaml", "id: [unclosed\ntimm_name: x\n")
    [problem] = validate_files([path])
    assert problem.startswith(f"{path}: not valid YAML at line")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(tmp_path)


def test_file_must_be_named_after_its_id(tmp_path, good_yaml):
    path = _write(tmp_path, "renamed.yaml", good_yaml)
    assert validate_files([path]) == [
        f"{path}: id: file must be named 'resnet18.a1_in1k.yaml' after its id"]


def test_duplicate_ids_across_files(tmp_path, good_yaml):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a", "resnet18.a1_in1k.yaml", good_yaml)
    second = _write(tmp_path / "b", "resnet18.a1_in1k.yaml", good_yaml)
    assert validate_files([first, second]) == [
        f"{second}: id: 'resnet18.a1_in1k' is already defined in {first}"]


def test_unknown_timm_architecture_and_tag(tmp_path, good_yaml):
    good_yaml.update(id="resnet18x.a1_in1k", timm_name="resnet18x")
    arch = _write(tmp_path, "resnet18x.a1_in1k.yaml", good_yaml)
    good_yaml.update(id="resnet18.b9_in1k", timm_name="resnet18", tag="b9_in1k")
    tag = _write(tmp_path, "resnet18.b9_in1k.yaml", good_yaml)
    problems = validate_files([arch, tag])
    assert problems[0].startswith(f"{arch}: timm_name: 'resnet18x' is not a timm model")
    assert problems[1] == f"{tag}: tag: timm has no pretrained tag 'b9_in1k' for resnet18"


def test_missing_or_empty_registry_folder(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(tmp_path / "nope")
    with pytest.raises(RegistryError, match="no .yaml files"):
        load_registry(tmp_path)


def test_bench_registry_env_var(tmp_path, monkeypatch):
    shutil.copy(REGISTRY / "gih_mlp.init.yaml", tmp_path)
    monkeypatch.setenv("BENCH_REGISTRY", str(tmp_path))
    assert list(load_registry()) == ["gih_mlp.init"]


# --- from timm and the CLI ----------------------------------------------------------------

def test_entry_from_timm_matches_the_committed_entry(registry):
    """`add --from-timm` reproduces every field a person does not edit by hand."""
    generated = entry_from_timm("resnet18.tv_in1k")
    committed = registry["resnet18.tv_in1k"]
    hand_edited = {"imagenet_top1", "notes"}
    assert generated.model_dump(exclude=hand_edited) == committed.model_dump(exclude=hand_edited)


def test_entry_from_timm_bare_arch_and_unknown():
    assert entry_from_timm("resnet18").id == "resnet18.a1_in1k"
    with pytest.raises(UnknownModelError):
        entry_from_timm("resnet18.nonexistent")


def test_param_count_on_meta_device():
    assert param_count("cifar_resnet56.akamaster_c10", 10) == 853018


def _run(capsys, *args):
    """Run the `bench` entry point in-process: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_add_writes_a_valid_entry_offline(tmp_path, capsys):
    code, out, _ = _run(capsys, "registry", "add", "--from-timm", "vgg11.tv_in1k", "--dir", str(tmp_path))
    assert code == 0 and "vgg11.tv_in1k.yaml" in out
    assert validate_files([tmp_path / "vgg11.tv_in1k.yaml"]) == []
    code, _, err = _run(capsys, "registry", "add", "--from-timm", "vgg11.tv_in1k", "--dir", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and "--force" in err and err.count("\n") == 1


def test_cli_validate_reports_problems_and_fails(tmp_path, good_yaml, capsys):
    good_yaml["data_config"]["crop_pct"] = 2
    path = _write(tmp_path, "resnet18.a1_in1k.yaml", good_yaml)
    code, _, err = _run(capsys, "registry", "validate", str(path))
    assert code == 2
    assert f"{path}: data_config.crop_pct:" in err and "1 problem(s)" in err
    code, out, _ = _run(capsys, "registry", "validate", str(REGISTRY / "gih_mlp.init.yaml"))
    assert code == 0 and "1 registry file(s) valid" in out


def test_cli_list_formats(capsys):
    code, out, _ = _run(capsys, "registry", "list", "--family", "cifar_resnet", "--format", "json")
    rows = json.loads(out)
    assert code == 0
    assert [r["model_id"] for r in rows] == [f"cifar_resnet{d}.akamaster_c10" for d in (20, 32, 44, 56)]
    code, out, _ = _run(capsys, "registry", "list", "--format", "csv")
    assert out.splitlines()[0].startswith("model_id,timm_name,tag,family")
    assert len(out.splitlines()) == len(FILES) + 1
    code, out, _ = _run(capsys, "registry", "list")
    assert "resnet18.a1_in1k" in out and "params (M)" in out
