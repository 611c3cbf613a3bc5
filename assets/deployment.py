"""Deployments: one asset per environment in the spec, serving the champion, gated after deploy.

The release itself (rollout steps, post-deploy gates, rollback) is resources/deployment/release.py,
without Dagster; this module makes it an asset: its gates become blocking asset checks, what serves
becomes the materialization. An environment that needs approval moves only when a person approved
the champion's very artifact and asks; the others follow a new champion once its gates passed.
"""

import dagster as dg

from assay import asset_keys
from assay.contract import GateResult
from assay.spec import UseCase
from automation.conditions import follows_gated_upstream
from resources.deployment.deployer import Deployer
from resources.deployment.release import GATES, approval_gate, roll_out, rollout_gates
from resources.registry import ModelRegistry


def _check(gate: GateResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=gate.name, passed=bool(gate.passed), severity=dg.AssetCheckSeverity.ERROR,
                               description=gate.description, metadata=gate.metadata)


def build_deployment(spec: UseCase, environment: str) -> dg.AssetsDefinition:
    key = asset_keys.deployment(spec, environment)
    needs_approval = environment in spec.release.approval_required
    gates = {g: d for g, d in GATES.items() if g != "approval" or needs_approval} | rollout_gates(spec)

    @dg.asset(
        key=key,
        deps=[asset_keys.champion(spec)],
        description=f"`{spec.name}`'s champion served in {environment}"
        + (" once approved" if needs_approval else "") + f", rolled out by {' then '.join(spec.release.strategy)}; "
        "rolled back to the incumbent when a rollout or post-deploy gate fails.",
        group_name=f"{spec.name}_release",
        owners=[spec.owner],
        kinds={"mlserver", "seldon"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=spec.freshness.deployment),
        tags={"stage": "deployment", "use_case": spec.name, "environment": environment},
        check_specs=[dg.AssetCheckSpec(g, asset=key, blocking=True, description=d) for g, d in gates.items()],
        output_required=False,  # an unapproved production deploy materializes nothing
        # Follows a new champion once its gates passed, in this run or an earlier one; an
        # environment that needs approval moves only when a person has approved and asks.
        automation_condition=None if needs_approval else follows_gated_upstream(),
    )
    def deployment(context: dg.AssetExecutionContext, registry: ModelRegistry, deployer: Deployer):
        champion = registry.alias(spec.name)
        if champion is None:
            raise dg.Failure(f"{spec.name} has no champion to deploy")
        if needs_approval:
            approval = approval_gate(spec, environment, champion)
            yield _check(approval)
            if not approval.passed:
                return

        release = roll_out(spec, environment, registry, deployer, champion, by=f"run {context.run.run_id}",
                           log=context.log)
        if release.serving is not None:
            yield dg.MaterializeResult(
                asset_key=key,
                data_version=dg.DataVersion(f"v{release.serving}"),
                metadata={
                    "deployed_version": champion.version,
                    "serving_version": release.serving,
                    "rolled_back_to": release.rolled_back_to or "none",
                    "previous_incumbent": release.incumbent or "none",
                    "url": dg.MetadataValue.url(f"{release.endpoint.url}/v2/models/{spec.name}"),
                    "environment": environment,
                },
            )
        yield from (_check(gate) for gate in release.gates)

    return deployment


def build_deployments(spec: UseCase) -> list[dg.AssetsDefinition]:
    return [build_deployment(spec, environment) for environment in spec.release.environments]

