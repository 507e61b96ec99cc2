"""PersistentVolume, PersistentVolumeClaim and Secret: accepted so model storage YAML loads.

On one machine a PV maps to a local directory (``hostPath``/``local`` path, or the
``tierserve.io/local-path`` annotation for PVs of other drivers such as the seed's OSS CSI
volume). Secret values are kept but never printed back.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from tierserve.model.base import FieldProblem, Strict, TypedObject, new_input
from tierserve.model.display import shown
from tierserve.model.resources import ResourceList

LOCAL_PATH_ANNOTATION = "tierserve.io/local-path"
AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]


class SecretRef(Strict):
    name: str
    namespace: str = "default"


class CSISource(Strict):
    driver: str
    volume_handle: str
    read_only: bool | None = None
    fs_type: str | None = None
    node_publish_secret_ref: SecretRef | None = None
    volume_attributes: dict[str, str] = Field(default_factory=dict)


class PathSource(Strict):
    path: str
    type: str | None = None


class PersistentVolumeSpec(Strict):
    capacity: ResourceList = Field(default_factory=dict)
    access_modes: list[AccessMode] = Field(default_factory=list)
    persistent_volume_reclaim_policy: Literal["Retain", "Delete", "Recycle"] = "Retain"
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None
    csi: CSISource | None = None
    host_path: PathSource | None = None
    local: PathSource | None = None
    claim_ref: dict[str, Any] | None = None
    mount_options: list[str] | None = None
    node_affinity: dict[str, Any] | None = None


class PersistentVolume(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "PersistentVolume"
    NAMESPACED: ClassVar[bool] = False

    api_version: str = "v1"
    kind: str = "PersistentVolume"
    spec: PersistentVolumeSpec
    status: dict[str, Any] | None = None

    def local_path(self) -> str | None:
        """The directory this volume maps to on one machine, if it names one."""
        annotated = self.metadata.annotations.get(LOCAL_PATH_ANNOTATION)
        if annotated:
            return annotated
        for source in (self.spec.host_path, self.spec.local):
            if source is not None:
                return source.path
        return None


class LabelSelector(Strict):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[dict[str, Any]] = Field(default_factory=list)


class ClaimResources(Strict):
    requests: ResourceList = Field(default_factory=dict)
    limits: ResourceList = Field(default_factory=dict)


class PersistentVolumeClaimSpec(Strict):
    access_modes: list[AccessMode] = Field(default_factory=list)
    resources: ClaimResources = Field(default_factory=ClaimResources)
    selector: LabelSelector | None = None
    volume_name: str | None = None
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem", "Block"] | None = None


class PersistentVolumeClaim(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "PersistentVolumeClaim"

    api_version: str = "v1"
    kind: str = "PersistentVolumeClaim"
    spec: PersistentVolumeClaimSpec
    status: dict[str, Any] | None = None


REDACTED = "<redacted>"
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_MAX_SECRET_KEY = 253


def _check_keys(value: dict[str, str]) -> None:
    for key in value:
        if len(key) > _MAX_SECRET_KEY or not _SECRET_KEY.match(key):
            raise FieldProblem(
                "",
                f"key {shown(key)} is not a valid Secret key: expected at most "
                f"{_MAX_SECRET_KEY} letters, digits, '-', '_' or '.'",
            )


class Secret(TypedObject):
    """Values are kept for the runtime's use but ``to_dict`` never prints them back, and
    no error message ever quotes them (``SECRET_FIELDS``): errors name the key only.
    ``data`` values are base64 (standard alphabet, padded), as in Kubernetes."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1",)
    KIND: ClassVar[str] = "Secret"
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("data", "stringData")

    api_version: str = "v1"
    kind: str = "Secret"
    type: str = "Opaque"
    string_data: dict[str, str] = Field(default_factory=dict, repr=False)
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    immutable: bool | None = None

    @field_validator("string_data")
    @classmethod
    def _string_keys(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if new_input(info):
            _check_keys(value)
        return value

    @field_validator("data")
    @classmethod
    def _base64(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if not new_input(info):
            return value
        _check_keys(value)
        for key, encoded in value.items():
            try:
                b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise FieldProblem(
                    key,
                    "not valid base64 (value not shown); expected the value base64-encoded "
                    "with padding, or given as plain text under stringData",
                ) from None
        return value

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("stringData", "data"):
            if key in out:
                out[key] = dict.fromkeys(out[key], REDACTED)
        return out
