"""The schema of one registry entry (one YAML file per checkpoint).

An entry is everything the benchmark needs to know about a checkpoint without
loading it: which timm architecture and pretrained tag it is, where its weights
live, under which license, from which paper, what it was trained on, and the
eval data config that defines its probe preprocessing (SPEC section 1). The
leaderboard filters on the same fields, through :meth:`RegistryEntry.model_row`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Interpolation = Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"]
CropMode = Literal["center", "squash", "border"]


class DataConfig(BaseModel):
    """The model's eval preprocessing, as timm's ``resolve_data_config`` gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: tuple[Literal[3], int, int]
    crop_pct: float = Field(gt=0, le=1.0)
    crop_mode: CropMode = "center"
    interpolation: Interpolation
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if v[1] <= 0 or v[2] <= 0:
            raise ValueError("height and width must be positive")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in v):
            raise ValueError("every std must be positive")
        return v

    def to_timm(self) -> dict[str, Any]:
        """Keyword arguments for ``timm.data.create_transform``."""
        return self.model_dump()


class RegistryEntry(BaseModel):
    """One checkpoint: a timm ``arch.tag`` with its provenance and eval data config.

    ``scope`` is ``checkpoint`` for entries with trained weights and
    ``architecture`` for controls that exist only as an architecture at
    initialization (the reference MLP of SPEC section 5).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=3)
    timm_name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    tag: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$")
    hub_id: str | None = None
    license: str = Field(min_length=1)
    paper: str = Field(min_length=1)
    family: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    pretraining_data: str = Field(min_length=1)
    num_classes: int = Field(gt=0)
    data_config: DataConfig
    param_count: int = Field(gt=0)
    imagenet_top1: float | None = Field(default=None, ge=0, le=100)
    scope: Literal["checkpoint", "architecture"] = "checkpoint"
    notes: str | None = None

    @model_validator(mode="after")
    def _id_is_arch_dot_tag(self) -> RegistryEntry:
        expected = f"{self.timm_name}.{self.tag}"
        if self.id != expected:
            raise ValueError(f"id must be '<timm_name>.<tag>' = '{expected}', got '{self.id}'")
        return self

    @property
    def input_size(self) -> int:
        """The eval resolution (H)."""
        return self.data_config.input_size[1]

    def model_row(self) -> dict[str, Any]:
        """This entry as a row of the store's ``models`` table."""
        return {
            "model_id": self.id,
            "timm_name": self.timm_name,
            "tag": self.tag,
            "family": self.family,
            "hub_id": self.hub_id,
            "license": self.license,
            "paper": self.paper,
            "pretraining_data": self.pretraining_data,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "param_count": self.param_count,
            "imagenet_top1": self.imagenet_top1,
        }

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain data in field order, for writing a registry file."""
        data = self.model_dump(mode="json")
        data["data_config"]["input_size"] = list(self.data_config.input_size)
        return data
