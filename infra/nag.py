"""cdk-nag on every synth, and acknowledgments that carry their reason next to the resource they excuse."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Stack, Token, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

#: App context key: when true, acknowledgments are only recorded (as ``ACKNOWLEDGMENT_METADATA`` metadata), not
#: applied, so a test can check that every one of them excuses a finding cdk-nag really reports.
RECORD_ONLY_CONTEXT = "modelmeter:nag-record-acknowledgments-only"
ACKNOWLEDGMENT_METADATA = "modelmeter:acknowledgment"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (``AwsSolutions-IAM5[Resource::…]`` for a single finding) on a construct."""
    if construct.node.try_get_context(RECORD_ONLY_CONTEXT):
        construct.node.add_metadata(ACKNOWLEDGMENT_METADATA, {"rule": rule, "reason": reason})
        return
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def add_checks(app: App) -> None:
    """Run the AWS Solutions rule pack when ``app`` synthesizes: any unacknowledged finding fails the synth."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def scoped_arn(scope: IConstruct, template: str) -> str:
    """An ARN from a template with ``{partition}``, ``{region}`` and ``{account}`` filled in from the stack."""
    stack = Stack.of(scope)
    return template.format(partition=stack.partition, region=stack.region, account=stack.account)


def acknowledge_arn_wildcard(construct: IConstruct, template: str, reason: str) -> None:
    """Acknowledge the IAM5 finding of one wildcard ARN made by :func:`scoped_arn` from ``template``.

    cdk-nag names the finding after the resolved resource: pseudo parameters appear as ``<AWS::Region>`` in an
    environment-agnostic stack and as their value when the stack has an explicit environment.
    """
    stack = Stack.of(construct)
    shown = {name: (f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value)
             for name, pseudo, value in (("partition", "Partition", stack.partition),
                                         ("region", "Region", stack.region),
                                         ("account", "AccountId", stack.account))}
    acknowledge(construct, f"AwsSolutions-IAM5[Resource::{template.format(**shown)}]", reason)


#: Feature flags every modelmeter app sets (what `cdk init` would put in cdk.json, for the behaviours we rely on).
FEATURE_FLAGS = {
    # Server access logs are granted by a bucket policy, not the legacy LogDeliveryWrite ACL, so buckets can
    # keep ACLs disabled (BucketOwnerEnforced).
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def new_app(*, outdir: str, context: dict | None = None, cloudformation_validation: bool = True) -> App:
    """An App with modelmeter's feature flags and cdk-nag's AwsSolutions checks on its synth.

    ``cloudformation_validation`` is CDK's built-in template validation (about 10 s per synth); the tests turn it
    off because they run cfn-lint on the same templates.
    """
    app = App(outdir=outdir, context={**FEATURE_FLAGS, **(context or {})},
              builtin_cloud_formation_validation=cloudformation_validation)
    add_checks(app)
    return app


def nag_ref(construct: IConstruct, attribute: str = "Arn") -> str:
    """How cdk-nag shows ``Fn::GetAtt`` of a resource in a finding id: ``<LogicalId.Arn>``.

    Computed from the construct, so acknowledgments never spell a generated logical id.
    """
    cfn = construct.node.default_child or construct
    stack = Stack.of(cfn)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.{attribute}>"  # type: ignore[arg-type]


KMS_GRANT_REASON = ("CDK's KMS grant (GenerateDataKey*, ReEncrypt*) on the unit's one named key; the wildcards are "
                    "in action names, not resources.")


def acknowledge_kms_grant(principal_construct: IConstruct) -> None:
    """Acknowledge the action wildcards of ``key.grant_encrypt_decrypt`` on a role or function."""
    for action in ("kms:ReEncrypt*", "kms:GenerateDataKey*"):
        acknowledge(principal_construct, f"AwsSolutions-IAM5[Action::{action}]", KMS_GRANT_REASON)


# Construct id CDK gives the one provider Lambda behind every AwsCustomResource of a stack.
_AWS_CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"


def acknowledge_custom_resource_provider(stack: Stack) -> None:
    """Acknowledge the findings of CDK's AwsCustomResource provider Lambda, when the stack has one."""
    provider = stack.node.try_find_child(_AWS_CUSTOM_RESOURCE_PROVIDER)
    if provider is None:
        return
    acknowledge(provider, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                          "AWSLambdaBasicExecutionRole]",
                "CDK's AwsCustomResource provider: the AWS-managed policy only lets it write its own logs.")
