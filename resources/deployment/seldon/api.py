"""The API boundary: server-side apply of a checked batch, and the deletes a roll-back needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from resources.deployment.seldon.plan import (
    APPLY_PATCH_CONTENT_TYPE,
    FIELD_MANAGER,
    ReleaseRejected,
    SeldonApplyError,
    SeldonError,
    _CORE2_EXPERIMENT,
    _CORE2_MODEL,
)
from resources.deployment.seldon.crds import _describe, _split_api_version, plural_of
from resources.deployment.seldon.admission import _get, _identity, _name_errors, release_problems


# Models (and SeldonDeployments) before the Experiment that routes to them; on delete the other way.
_APPLY_ORDER = {"Model": 0, "SeldonDeployment": 0, "Experiment": 1}


def _target(resource: Mapping) -> dict[str, str]:
    group, version = _split_api_version(resource["apiVersion"])
    metadata = resource["metadata"]
    return {"group": group, "version": version, "namespace": metadata["namespace"],
            "plural": plural_of(resource), "name": metadata["name"]}  # fmt: skip


def apply(resources: Sequence[Mapping], api_client, *, dry_run: bool = False) -> list[dict]:
    """Server-side apply every resource, or none: validates and admission-checks the whole batch
    first and raises `ReleaseRejected` (nothing sent) on any problem. Then one PATCH per resource,
    Models before Experiments, as field manager "assay" with force (Assay owns these objects) and
    the API server's strict field validation. `dry_run` asks the server to check without storing.
    Returns the objects the server answered with. A refusal by the server raises
    `SeldonApplyError` naming the resource and what was applied before it; applying again is
    safe (server-side apply is idempotent)."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    resources = list(resources)
    problems = release_problems(resources)
    if problems:
        raise ReleaseRejected(problems)
    api = CustomObjectsApi(api_client)
    applied: list[str] = []
    answers = []
    for resource in sorted(resources, key=lambda r: _APPLY_ORDER.get(r["kind"], 0)):
        extra = {"dry_run": "All"} if dry_run else {}
        try:
            answers.append(api.patch_namespaced_custom_object(
                **_target(resource), body=dict(resource), field_manager=FIELD_MANAGER, force=True,
                field_validation="Strict", _content_type=APPLY_PATCH_CONTENT_TYPE, **extra,
            ))  # fmt: skip
        except ApiException as error:
            raise SeldonApplyError(
                f"{_describe(resource)}: the API server refused the apply ({error.status} "
                f"{error.reason}): {error.body}; applied before it: {applied or 'nothing'}"
            ) from error
        applied.append(_describe(resource))
    return answers


def obsolete(before: Sequence[Mapping], after: Sequence[Mapping]) -> list[dict]:
    """The resources of `before` that `after` no longer has (by group, kind, namespace, name):
    what a rollback or the end of a release must delete once `after` is applied."""
    keep = {_identity(r) for r in after}
    return [dict(r) for r in before if _identity(r) not in keep]


def delete(resources: Sequence[Mapping], api_client) -> list[str]:
    """Delete Core 2 Experiments and Models (Experiments first, so none routes to a Model that is
    gone); one already gone counts as deleted. A SeldonDeployment is never deleted here: it is
    rolled back by applying its new predictors, and deleting it would take the endpoint down
    (Role assay-deployer grants no delete on it). Returns "Kind/name" of each one deleted."""
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    resources = list(resources)
    refused = [_describe(r) for r in resources if _identity(r)[:2] not in (_CORE2_MODEL, _CORE2_EXPERIMENT)]
    if refused:
        raise SeldonError(f"only Core 2 Models and Experiments are deleted, not {refused}")
    bad = [
        f"{_describe(r)}: {e}"
        for r in resources
        for e in _name_errors(_get(_get(r, "metadata"), "name"), "$.metadata.name", "name")
        + _name_errors(_get(_get(r, "metadata"), "namespace"), "$.metadata.namespace", "namespace")
    ]
    if bad:
        raise SeldonError("refusing to delete: " + "; ".join(bad))
    api = CustomObjectsApi(api_client)
    deleted = []
    for resource in sorted(resources, key=lambda r: -_APPLY_ORDER.get(r["kind"], 0)):
        try:
            api.delete_namespaced_custom_object(**_target(resource))
        except ApiException as error:
            if error.status != 404:
                raise SeldonApplyError(
                    f"{_describe(resource)}: the API server refused the delete ({error.status} "
                    f"{error.reason}): {error.body}; deleted before it: {deleted or 'nothing'}"
                ) from error
        deleted.append(_describe(resource))
    return deleted
