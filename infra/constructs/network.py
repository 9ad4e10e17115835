"""The unit's VPC: private subnets only (unless NAT is asked for), reaching AWS services through VPC endpoints."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge

# Interface endpoints the Lambdas need: models (Bedrock, SageMaker), the usage stream, the private API, logs and
# metrics (Powertools writes EMF to logs), what the transform calls (Athena, Glue, KMS, STS, SQS) and Lambda. Each costs
# about USD 7/month per AZ (docs/deploy.md).
INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "bedrock-runtime": ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME,
    "bedrock": ec2.InterfaceVpcEndpointAwsService.BEDROCK,
    "sagemaker-runtime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "firehose": ec2.InterfaceVpcEndpointAwsService.KINESIS_FIREHOSE,
    "execute-api": ec2.InterfaceVpcEndpointAwsService.APIGATEWAY,
    "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "athena": ec2.InterfaceVpcEndpointAwsService.ATHENA,
    "glue": ec2.InterfaceVpcEndpointAwsService.GLUE,
    "kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    # the gateway invokes itself asynchronously for seed async calls (ingest/async_worker.py)
    "lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
}


class Network(Construct):
    """VPC with private subnets, gateway endpoints (S3, DynamoDB), interface endpoints and flow logs.

    Attributes:
        vpc: the VPC.
        lambda_subnets: where the Lambdas run.
        lambda_security_group: the Lambdas' security group (HTTPS egress only).
        endpoints: interface endpoints by service name; ``execute-api`` is the way into a private API.
    """

    def __init__(self, scope: Construct, construct_id: str, *, cidr: str, nat_gateways: int = 0,
                 max_azs: int = 2) -> None:
        super().__init__(scope, construct_id)
        private_type = ec2.SubnetType.PRIVATE_WITH_EGRESS if nat_gateways else ec2.SubnetType.PRIVATE_ISOLATED
        subnets = [ec2.SubnetConfiguration(name="private", subnet_type=private_type, cidr_mask=22)]
        if nat_gateways:
            subnets.append(ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26))
        self.vpc = ec2.Vpc(
            self, "Vpc", ip_addresses=ec2.IpAddresses.cidr(cidr), max_azs=max_azs, nat_gateways=nat_gateways,
            subnet_configuration=subnets, restrict_default_security_group=True,
        )
        flow_logs = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.THREE_MONTHS,
                                  removal_policy=RemovalPolicy.DESTROY)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                              traffic_type=ec2.FlowLogTrafficType.ALL)
        self.lambda_subnets = ec2.SubnetSelection(subnet_type=private_type)
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.vpc.add_gateway_endpoint("DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)

        # HTTPS out only. Gateway endpoints are addressed by AWS prefix lists whose ids need an account lookup
        # (synthesis makes none), so the rule names 0.0.0.0/0:443; without NAT the route tables reach nothing else.
        self.lambda_security_group = ec2.SecurityGroup(
            self, "LambdaSg", vpc=self.vpc, allow_all_outbound=False,
            description="modelmeter Lambdas: HTTPS out to VPC endpoints (and NAT when configured)")
        self.lambda_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS out")
        endpoint_sg = ec2.SecurityGroup(self, "EndpointSg", vpc=self.vpc, allow_all_outbound=False,
                                        description="modelmeter interface endpoints: HTTPS from inside the VPC")
        endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(self.vpc.vpc_cidr_block), ec2.Port.tcp(443), "HTTPS from VPC")
        # EC23 cannot evaluate a CIDR given as Fn::GetAtt; the rule admits the VPC's own CIDR only.
        acknowledge(endpoint_sg, "AwsSolutions-EC23", "Ingress is the VPC's own CIDR (443), not 0.0.0.0/0.")
        self.endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {
            name: self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True, security_groups=[endpoint_sg],
                subnets=self.lambda_subnets)
            for name, service in INTERFACE_ENDPOINTS.items()
        }
