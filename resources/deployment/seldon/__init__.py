"""Seldon on Kubernetes: one release plan rendered, checked and applied.

One module per stage: `plan` (the release plan, names, labels, errors), `render` (both Seldon
flavours), `crds` (strict schema validation), `admission` (the rules the CRDs do not encode) and
`api` (server-side apply and delete). This package re-exports their public names.

A `ReleasePlan` says what one use case serves: its champion, and optionally a candidate beside it
(a shadow that sees every request but answers none, or a canary that answers a share). It renders
to either Seldon flavour:

- Seldon Core 2 (`mlops.seldon.io/v1alpha1`, `render_core2`): one `Model` per version, and for
  shadow or canary one `Experiment` whose `default` is the champion, so the champion's own
  endpoint carries the split (canary) or the mirror (shadow).
- Seldon Core v1 (`machinelearning.seldon.io/v1`, `render_v1`): one `SeldonDeployment` named after
  the use case, protocol `v2`, whose predictors run the MLServer-backed `MLFLOW_SERVER`; canary is
  two predictors whose `traffic` sums to 100, shadow a second predictor with `shadow: true`.

No cluster is needed to check a rendering. `validate_against_crd` validates a resource against
the CRD's own `openAPIV3Schema` (the copies in platform/seldon/crds, see SOURCE.md there) in
strict mode, so a misspelt or unknown field fails as it would under the API server's strict
field validation instead of being pruned silently. `admission_errors` adds the rules the CRDs do
not encode (Seldon's admission webhook for v1, its scheduler for Core 2, and a few of Assay's
own, each marked below). `apply` refuses the whole batch if any resource fails either, and only
then sends one server-side apply per resource (PATCH, `application/apply-patch+yaml`, field
manager "assay", force, strict field validation). Its rights are Role `assay-deployer`
(platform/k8s/deployer-rbac.yaml).

The Dagster side calls, in order:

    plan = ReleasePlan(use_case="flights", champion=ModelRef("3", uri, sha), candidate=...,
                       strategy="canary", canary_weight=10)
    resources = render_core2(plan)            # or render_v1(plan)
    problems = release_problems(resources)    # [] when admissible (an asset check can show these)
    apply(resources, kubernetes.config.new_client_from_config() / in-cluster ApiClient)

and, to roll back or end a release on Core 2 (server-side apply cannot remove an object):

    after = render_core2(dataclasses.replace(plan, candidate=None, strategy="full"))
    apply(after, api_client)
    delete(obsolete(render_core2(plan), after), api_client)   # the Experiment, then the candidate
"""

from resources.deployment.seldon.plan import (  # noqa: F401
    APPLY_PATCH_CONTENT_TYPE,
    CORE2_API_VERSION,
    CRDS_ENV,
    DEFAULT_CRDS_DIR,
    FIELD_MANAGER,
    MANAGED_BY,
    MODEL_SHA256_PARAMETER,
    ModelRef,
    PART_OF,
    PREPACKAGED_SERVERS,
    ROLE_LABEL,
    ReleasePlan,
    ReleasePlanError,
    ReleaseRejected,
    Resources,
    SHA256_ANNOTATION,
    STRATEGIES,
    STRATEGY_ANNOTATION,
    SeldonApplyError,
    SeldonError,
    SeldonValidationError,
    USE_CASE_LABEL,
    V1_API_VERSION,
    VERSION_LABEL,
    dns_name,
    is_dns_label,
    is_label_value,
)
from resources.deployment.seldon.render import (  # noqa: F401
    render_core2,
    render_v1,
)
from resources.deployment.seldon.crds import (  # noqa: F401
    crds_dir,
    plural_of,
    validate_against_crd,
)
from resources.deployment.seldon.admission import (  # noqa: F401
    admission_errors,
    batch_errors,
    release_problems,
)
from resources.deployment.seldon.api import (  # noqa: F401
    apply,
    delete,
    obsolete,
)
