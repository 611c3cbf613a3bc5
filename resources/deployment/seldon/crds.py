"""Strict validation against the CRDs' own `openAPIV3Schema` (the vendored copies in platform/seldon/crds):
a misspelt or unknown field fails here as it would under the API server's strict field validation."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from resources.deployment.seldon.plan import CRDS_ENV, DEFAULT_CRDS_DIR, SeldonError, SeldonValidationError


def crds_dir() -> Path:
    """Where the Seldon CRDs are read from: $ASSAY_SELDON_CRDS, else platform/seldon/crds."""
    return Path(os.environ.get(CRDS_ENV) or DEFAULT_CRDS_DIR)


@lru_cache(maxsize=4)
def _crd_index(directory: str) -> dict[tuple[str, str], dict]:
    """(group, kind) -> CRD, from every YAML file in `directory`."""
    folder = Path(directory)
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
    if not files:
        raise SeldonError(
            f"no Seldon CRDs in {folder} (set {CRDS_ENV} to the folder holding "
            "mlops.seldon.io_*.yaml and machinelearning.seldon.io_seldondeployments.yaml)"
        )
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    index: dict[tuple[str, str], dict] = {}
    for path in files:
        with path.open() as stream:
            for doc in yaml.load_all(stream, Loader=loader):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    spec = doc["spec"]
                    index[(spec["group"], spec["names"]["kind"])] = {**doc, "_path": str(path)}
    return index


def _split_api_version(api_version: object) -> tuple[str, str]:
    if not isinstance(api_version, str) or api_version.count("/") != 1:
        raise SeldonError(f"apiVersion {api_version!r} is not group/version")
    group, version = api_version.split("/")
    return group, version


def _describe(resource: Mapping) -> str:
    metadata = resource.get("metadata") if isinstance(resource, Mapping) else None
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    kind = resource.get("kind") if isinstance(resource, Mapping) else None
    return f"{kind or '<no kind>'}/{name or '<no name>'}"


def _crd_for(resource: Mapping) -> dict:
    group, _ = _split_api_version(resource.get("apiVersion"))
    kind = resource.get("kind")
    directory = crds_dir()
    index = _crd_index(str(directory))
    if (group, kind) not in index:
        known = sorted(f"{g}/{k}" for g, k in index)
        raise SeldonError(
            f"{_describe(resource)}: no CRD for {group} {kind} in {directory}; known: {known}"
        )
    return index[(group, kind)]


def plural_of(resource: Mapping) -> str:
    """The resource's plural (the URL segment and RBAC resource), read from its CRD."""
    return _crd_for(resource)["spec"]["names"]["plural"]


# ObjectMeta is the API server's, not the CRD's: only the fields rendered here are checked.
_LENIENT_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(schema: Any, under: str | None = None) -> Any:
    """A copy of a CRD schema in which unknown fields fail.

    Kubernetes prunes fields a structural schema does not declare, so an object that declares
    `properties` (or declares nothing) and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields` gets `additionalProperties: false`. Also: the
    `x-kubernetes-int-or-string` extension as `anyOf` integer/string, OpenAPI's `nullable`, list
    type `set` as unique items, and an embedded ObjectMeta (`metadata` of type object, no
    properties) checked leniently."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if (
        under == "metadata"
        and schema.get("type") == "object"
        and "properties" not in schema
        and "additionalProperties" not in schema
    ):
        return copy.deepcopy(_LENIENT_METADATA)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("description", "example"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {name: _strict(sub, under=name) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if out.get("x-kubernetes-embedded-resource") and "properties" in out:
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["properties"].setdefault("metadata", copy.deepcopy(_LENIENT_METADATA))
    is_object = "properties" in out or out.get("type") == "object"
    if (
        is_object
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=1)
def _format_checker():
    """Only the integer widths: other formats (date-time, byte, ...) are the API server's to check.
    jsonschema is imported here, not at module load: the code location imports this module and should
    not pay for a validator it only needs when a release is applied."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63

    return checker


@lru_cache(maxsize=16)
def _strict_validator(directory: str, group: str, kind: str, version: str):
    crd = _crd_index(directory)[(group, kind)]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if version not in versions:
        raise SeldonError(f"{group} {kind}: the CRD ({crd['_path']}) has no version {version!r}; "
                          f"it has {sorted(versions)}")
    entry = versions[version]
    if not entry.get("served", False):
        raise SeldonError(f"{group}/{version} {kind} is not served by the CRD ({crd['_path']})")
    schema = _strict(entry["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = copy.deepcopy(_LENIENT_METADATA)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    import jsonschema

    # OpenAPI 3.0's schema object is draft 4's (boolean exclusiveMinimum/Maximum).
    return jsonschema.Draft4Validator(schema, format_checker=_format_checker())


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def _schema_errors(resource: Mapping) -> list[tuple[str, str]]:
    """(JSON path, reason) for every way `resource` breaks its CRD's strict schema."""
    group, version = _split_api_version(resource.get("apiVersion"))
    _crd_for(resource)  # a clear error when no CRD matches
    validator = _strict_validator(str(crds_dir()), group, resource.get("kind"), version)
    found = []
    for error in validator.iter_errors(resource):
        where = list(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            declared = set(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - declared, key=str):
                reason = f"unknown field {extra!r}: not in the {resource.get('kind')} CRD schema"
                found.append((_json_path([*where, extra]), reason))
            continue
        if error.validator in ("anyOf", "oneOf") and error.context:
            from jsonschema.exceptions import best_match

            error = best_match(error.context) or error
        found.append((_json_path(where), error.message))
    return sorted(set(found))


def validate_against_crd(resource: Mapping) -> None:
    """Validate `resource` against its CRD's `openAPIV3Schema`, strictly (unknown fields fail).
    Raises `SeldonValidationError` naming kind/name and the JSON path; `SeldonError` when no
    CRD matches its apiVersion/kind."""
    if not isinstance(resource, Mapping):
        raise SeldonError(f"a resource must be a mapping, got {type(resource).__name__}")
    errors = _schema_errors(resource)
    if errors:
        (path, message), *rest = errors
        raise SeldonValidationError(_describe(resource), path, message,
                                    [f"{p}: {m}" for p, m in rest])  # fmt: skip
