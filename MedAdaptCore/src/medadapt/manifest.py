"""The schema of an adapter folder's ``manifest.json`` (pydantic), checked before anything in it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from medadapt.config import AdaptConfig
from medadapt.errors import InputError

FORMAT = 1


class BaseModelFacts(BaseModel):
    """The base model an adapter was trained on and the SHA-256 of its weights."""

    name: str
    sha256: str


class ExemplarFacts(BaseModel):
    """Where the adapted painting lay: slice axis, painted slices and labels."""

    axis: int = Field(ge=0, le=2)
    slices: list[int] = []
    labels: list[int] = []


class HeadFacts(BaseModel):
    """What rebuilds the FSEFT heads (:meth:`medadapt.fseft.HeadSet.describe`) and their checksum."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["linear-probe", "spatial-adapter"]
    features: str
    channels: int = Field(ge=1)
    labels: list[int] = Field(min_length=1)
    width: int = Field(ge=0)
    dims: Literal[2, 3] = 2
    sha256: str


class AtlasFacts(BaseModel):
    """Checksums of the saved atlas image and labels."""

    image: str
    labels: str


class BaseDeltaFacts(BaseModel):
    """The lineage delta the base model carried when the adapter trained: checksum, lineage name and stage."""

    sha256: str
    lineage: str = ""
    stage: int = Field(ge=0, default=0)


class Manifest(BaseModel):
    """``manifest.json``: format, versions, base model, checksums, the full :class:`AdaptConfig` and run facts
    (unknown keys are kept, so newer manifests stay readable)."""

    model_config = ConfigDict(extra="allow")
    format: Literal[1]
    base_model: BaseModelFacts
    adapter_sha256: str
    config: dict
    exemplars: Optional[ExemplarFacts] = None
    window: Optional[tuple[float, float]] = None
    heads: Optional[HeadFacts] = None
    atlas: Optional[AtlasFacts] = None
    base_delta: Optional[BaseDeltaFacts] = None


def validated_manifest(data: object, path: Path) -> tuple[dict, AdaptConfig]:
    """(manifest as a dict, its config) when ``data`` fits :class:`Manifest`, else :class:`InputError` naming
    ``path`` and the first wrong field."""
    try:
        manifest = Manifest.model_validate(data)
        config = TypeAdapter(AdaptConfig).validate_python(manifest.config)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "manifest"
        prefix = "" if error["loc"] and error["loc"][0] in Manifest.model_fields else "config."
        if isinstance(data, dict) and "format" in data and data.get("format") != FORMAT:
            raise InputError(f"{path}: unsupported adapter format {data.get('format')!r}; expected {FORMAT}") from exc
        raise InputError(f"{path}: manifest field {prefix}{where}: {error['msg']}") from exc
    return manifest.model_dump(exclude_none=True), config
