"""Each policy alone: a complying resource passes and a violating one is reported.

`compliant_stack()` is a small, fully linked ECS-on-EC2 stack that obeys every policy (the first test
proves it against the whole pack). Each case edits one thing in a fresh copy and expects exactly one policy
to object; the extra cases pin down the edges (string booleans, auto-naming, unset defaults).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from policy.rules import BY_NAME, POLICIES
from tests.harness import Registered
from tests.policy_support import Fake, check, evaluate, fake, violated

Stack = dict[str, Registered]

EXEC_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
LABEL = "app/ms-prod-alb/50dc6c495c0c9188/targetgroup/ms-prod-tg/73e2d6bc24d8a067"
LOG_GROUP_NAME = "/ecs/ms/1"
ECS_USER_DATA = "#!/bin/bash\nECS_CLUSTER=ms\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_AWSVPC_BLOCK_IMDS=true\n"
LOGS_KEY_POLICY = json.dumps({"Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
    {"Effect": "Allow", "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
     "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"], "Resource": "*"}]})
TLS_ONLY = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::logs/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
ELB_DELIVERY = {"Effect": "Allow", "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                "Action": "s3:PutObject", "Resource": "arn:aws:s3:::logs/alb/AWSLogs/123456789012/*"}


def trust(service: str = "ecs-tasks.amazonaws.com", **statement: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole", **statement}]})


def user_data(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def container(**changes: Any) -> dict[str, Any]:
    return {
        "name": "model-server", "image": "repo:v1", "essential": True, "privileged": False,
        "readonlyRootFilesystem": True, "user": "10001:10001",
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": LOG_GROUP_NAME}},
        "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
        "environment": [{"name": "MODEL_NAME", "value": "resnet"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "startPeriod": 120},
        **changes,
    }


def containers(**changes: Any) -> dict[str, Any]:
    """Task definition inputs with one container changed."""
    return {"containerDefinitions": json.dumps([container(**changes)])}


def statement(action: str | list[str], resource: str) -> str:
    return json.dumps({"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]})


def props(s: Stack, key: str) -> dict[str, Any]:
    return s[key].inputs


def compliant_stack() -> Stack:
    """Every resource type the pack checks, wired the way infra/ wires them, obeying every policy."""
    make = Fake()
    s: Stack = {}
    s["repo"] = make("aws:ecr/repository:Repository", "ms-repo", {
        "imageScanningConfiguration": {"scanOnPush": True}, "imageTagMutability": "IMMUTABLE",
        "encryptionConfigurations": [{"encryptionType": "KMS"}]})
    s["lifecycle"] = make("aws:ecr/lifecyclePolicy:LifecyclePolicy", "ms-lifecycle",
                          {"repository": "ms-repo-1", "policy": "{}"}, links={"repository": [s["repo"]]})
    s["cluster"] = make("aws:ecs/cluster:Cluster", "ms", {"settings": [{"name": "containerInsights",
                                                                         "value": "enabled"}]})
    s["key"] = make("aws:kms/key:Key", "ms-logs", {"enableKeyRotation": True, "policy": LOGS_KEY_POLICY})
    s["logs"] = make("aws:cloudwatch/logGroup:LogGroup", "ms", {"retentionInDays": 365.0, "kmsKeyId": "arn:key",
                                                                 "name": LOG_GROUP_NAME},
                     links={"kmsKeyId": [s["key"]]})
    s["bucket"] = make("aws:s3/bucket:Bucket", "ms-logs", {"forceDestroy": False})
    on_bucket = {"bucket": [s["bucket"]]}
    s["bucket_block"] = make("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "ms-logs-block", {
        "bucket": "logs", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
        "restrictPublicBuckets": True}, links=on_bucket)
    s["bucket_sse"] = make(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "ms-logs-sse",
        {"bucket": "logs", "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
        links=on_bucket)
    s["bucket_policy"] = make("aws:s3/bucketPolicy:BucketPolicy", "ms-logs-policy", {
        "bucket": "logs", "policy": json.dumps({"Statement": [ELB_DELIVERY, TLS_ONLY]})}, links=on_bucket)
    s["bucket_expiry"] = make("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "ms-logs-expiry", {
        "bucket": "logs", "rules": [{"id": "expire", "status": "Enabled", "expiration": {"days": 365.0},
                                     "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1.0}}]},
        links=on_bucket)
    s["alb_sg"] = make("aws:ec2/securityGroup:SecurityGroup", "ms-alb", {"description": "ALB"})
    s["tasks_sg"] = make("aws:ec2/securityGroup:SecurityGroup", "ms-tasks", {"description": "tasks"})
    s["alb_in"] = make("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ms-alb-in-80", {
        "description": "clients", "ipProtocol": "tcp", "fromPort": 80.0, "toPort": 80.0, "cidrIpv4": "0.0.0.0/0",
        "securityGroupId": "sg-alb"}, links={"securityGroupId": [s["alb_sg"]]})
    s["tasks_in"] = make("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ms-tasks-in", {
        "description": "ALB to tasks", "ipProtocol": "tcp", "fromPort": 8080.0, "toPort": 8080.0,
        "securityGroupId": "sg-tasks", "referencedSecurityGroupId": "sg-alb"},
        links={"securityGroupId": [s["tasks_sg"]], "referencedSecurityGroupId": [s["alb_sg"]]})
    s["tasks_out"] = make("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "ms-tasks-out", {
        "description": "HTTPS out", "ipProtocol": "tcp", "fromPort": 443.0, "toPort": 443.0,
        "cidrIpv4": "0.0.0.0/0", "securityGroupId": "sg-tasks"}, links={"securityGroupId": [s["tasks_sg"]]})
    s["instance_role"] = make("aws:iam/role:Role", "ms-instance", {"assumeRolePolicy": trust("ec2.amazonaws.com")})
    s["instance_attach"] = make("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "ms-instance-policy",
                                {"role": "ms-instance-1", "policyArn": INSTANCE_POLICY},
                                links={"role": [s["instance_role"]]})
    s["profile"] = make("aws:iam/instanceProfile:InstanceProfile", "ms-instance", {"role": "ms-instance-1"},
                        links={"role": [s["instance_role"]]})
    s["exec_role"] = make("aws:iam/role:Role", "ms-execution", {"assumeRolePolicy": trust()})
    s["task_role"] = make("aws:iam/role:Role", "ms-task", {"assumeRolePolicy": trust()})
    s["exec_attach"] = make("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "ms-execution-policy",
                            {"role": "ms-execution-1", "policyArn": EXEC_POLICY}, links={"role": [s["exec_role"]]})
    s["task_policy"] = make("aws:iam/rolePolicy:RolePolicy", "ms-task-read", {"role": "ms-task-1", "policy": json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::models/*"}]})},
        links={"role": [s["task_role"]]})
    s["lt"] = make("aws:ec2/launchTemplate:LaunchTemplate", "ms-instances", {
        "instanceType": "c6i.2xlarge",
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1.0},
        "networkInterfaces": [{"associatePublicIpAddress": "false", "securityGroups": ["sg-instances"]}],
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 50.0}}],
        "iamInstanceProfile": {"arn": "arn:profile"}, "userData": user_data(ECS_USER_DATA)},
        links={"iamInstanceProfile": [s["profile"]]})
    s["asg"] = make("aws:autoscaling/group:Group", "ms-instances", {
        "vpcZoneIdentifiers": ["subnet-a", "subnet-b"], "launchTemplate": {"id": "lt-1", "version": "1"},
        "protectFromScaleIn": True, "forceDelete": True, "minSize": 2.0, "maxSize": 6.0,
        "tags": [{"key": "AmazonECSManaged", "value": "true", "propagateAtLaunch": True}]},
        links={"launchTemplate": [s["lt"]]}, ignore_changes=["desiredCapacity"])
    s["cp"] = make("aws:ecs/capacityProvider:CapacityProvider", "cp-ms", {"autoScalingGroupProvider": {
        "autoScalingGroupArn": "arn:asg", "managedTerminationProtection": "ENABLED", "managedDraining": "ENABLED",
        "managedScaling": {"status": "ENABLED", "targetCapacity": 80.0}}},
        links={"autoScalingGroupProvider": [s["asg"]]})
    spot_lt = {**props(s, "lt")}
    del spot_lt["instanceType"]  # a Spot group takes its types from the overrides
    s["spot_lt"] = make("aws:ec2/launchTemplate:LaunchTemplate", "ms-spot", spot_lt,
                        links={"iamInstanceProfile": [s["profile"]]})
    s["spot_asg"] = make("aws:autoscaling/group:Group", "ms-spot", {
        **{k: v for k, v in props(s, "asg").items() if k != "launchTemplate"},
        "mixedInstancesPolicy": {"launchTemplate": {
            "launchTemplateSpecification": {"launchTemplateId": "lt-2", "version": "1"},
            "overrides": [{"instanceType": "c6i.2xlarge"}, {"instanceType": "m6i.2xlarge"}]}}},
        links={"mixedInstancesPolicy": [s["spot_lt"]]}, ignore_changes=["desiredCapacity"])
    s["spot_cp"] = make("aws:ecs/capacityProvider:CapacityProvider", "cp-ms-spot", {
        "autoScalingGroupProvider": {**props(s, "cp")["autoScalingGroupProvider"]}},
        links={"autoScalingGroupProvider": [s["spot_asg"]]})
    s["ccp"] = make("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders", "ms-capacity-providers",
                    {"clusterName": "ms-1", "capacityProviders": ["cp-ms-1", "cp-ms-spot-1"]},
                    links={"capacityProviders": [s["cp"], s["spot_cp"]], "clusterName": [s["cluster"]]})
    s["td"] = make("aws:ecs/taskDefinition:TaskDefinition", "ms", {
        "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"], "cpu": "2048", "memory": "4096",
        "executionRoleArn": "arn:execution", "taskRoleArn": "arn:task",
        "containerDefinitions": json.dumps([container()])},
        links={"executionRoleArn": [s["exec_role"]], "taskRoleArn": [s["task_role"]]})
    s["lb"] = make("aws:lb/loadBalancer:LoadBalancer", "ms-alb", {
        "loadBalancerType": "application", "internal": False, "subnets": ["subnet-c", "subnet-d"],
        "securityGroups": ["sg-alb"], "dropInvalidHeaderFields": True, "desyncMitigationMode": "defensive",
        "enableDeletionProtection": True, "accessLogs": {"enabled": True, "bucket": "logs", "prefix": "alb"}},
        links={"securityGroups": [s["alb_sg"]], "accessLogs": [s["bucket"]]})
    s["tg"] = make("aws:lb/targetGroup:TargetGroup", "ms-tg", {
        "targetType": "ip", "protocol": "HTTP", "port": 8080.0, "deregistrationDelay": 30.0,
        "healthCheck": {"enabled": True, "protocol": "HTTP", "path": "/health", "matcher": "200",
                        "interval": 10.0, "healthyThreshold": 2.0, "unhealthyThreshold": 3.0}})
    s["https"] = make("aws:lb/listener:Listener", "ms-https", {
        "protocol": "HTTPS", "port": 443.0, "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "certificateArn": "arn:cert", "defaultActions": [{"type": "forward", "targetGroupArn": "arn:tg"}]},
        links={"loadBalancerArn": [s["lb"]], "defaultActions": [s["tg"]]})
    s["http"] = make("aws:lb/listener:Listener", "ms-http", {
        "protocol": "HTTP", "port": 80.0, "defaultActions": [
            {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]},
        links={"loadBalancerArn": [s["lb"]]})
    s["service"] = make("aws:ecs/service:Service", "ms", {
        "desiredCount": 3.0, "capacityProviderStrategies": [{"capacityProvider": "cp-ms-1", "weight": 1.0, "base": 2.0},
                                                            {"capacityProvider": "cp-ms-spot-1", "weight": 3.0}],
        "networkConfiguration": {"assignPublicIp": False, "subnets": ["subnet-a", "subnet-b"],
                                 "securityGroups": ["sg-tasks"]},
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "deploymentMinimumHealthyPercent": 100.0, "deploymentMaximumPercent": 200.0,
        "healthCheckGracePeriodSeconds": 180.0,
        "loadBalancers": [{"targetGroupArn": "arn:tg", "containerName": "model-server", "containerPort": 8080.0}],
        "orderedPlacementStrategies": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                       {"type": "binpack", "field": "memory"}]},
        links={"taskDefinition": [s["td"]], "loadBalancers": [s["tg"]],
               "capacityProviderStrategies": [s["cp"], s["spot_cp"]],
               "cluster": [s["cluster"]], "networkConfiguration": [s["tasks_sg"]]},
        depends_on=[s["ccp"], s["https"], s["http"], s["exec_attach"], s["task_policy"], s["instance_attach"]],
        ignore_changes=["desiredCount"])
    s["target"] = make("aws:appautoscaling/target:Target", "ms-tasks", {
        "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/ms/ms", "minCapacity": 2.0, "maxCapacity": 10.0},
        links={"resourceId": [s["service"]]})
    s["requests"] = make("aws:appautoscaling/policy:Policy", "ms-requests", {
        "policyType": "TargetTrackingScaling", "targetTrackingScalingPolicyConfiguration": {
            "targetValue": 1000.0, "predefinedMetricSpecification": {
                "predefinedMetricType": "ALBRequestCountPerTarget", "resourceLabel": LABEL}}},
        links={"resourceId": [s["target"]]})
    return s


def test_the_compliant_stack_passes_every_policy() -> None:
    violations = evaluate(list(compliant_stack().values()))
    assert violations == [], "\n".join(map(str, violations))


def edit_container(s: Stack, **changes: Any) -> None:
    props(s, "td")["containerDefinitions"] = json.dumps([container(**changes)])


def drop_dependency(s: Stack, key: str, dependency: str) -> None:
    s[key].dependencies.remove(s[dependency].urn)


def add_standalone(s: Stack, key: str, type_: str, name: str, values: dict[str, Any],
                   links: dict[str, list[Registered]]) -> None:
    s[key] = fake(type_, name, values, links=links)


def no_grace_period(s: Stack) -> None:
    props(s, "service").pop("healthCheckGracePeriodSeconds")
    edit_container(s, healthCheck=None)  # no start period either, or FN-11 objects too


def world_open_tasks(s: Stack) -> None:
    rule = props(s, "tasks_in")
    del rule["referencedSecurityGroupId"]
    rule["cidrIpv4"] = "0.0.0.0/0"
    del s["tasks_in"].property_dependencies["referencedSecurityGroupId"]


def service_subnets_in_one_zone(s: Stack) -> None:
    subnets = [fake("aws:ec2/subnet:Subnet", f"ms-private-{i}", {"availabilityZone": "us-east-1a"}) for i in "ab"]
    s["service"].property_dependencies["networkConfiguration"] = [r.urn for r in subnets]
    s.update({f"subnet{i}": subnet for i, subnet in enumerate(subnets)})


@pytest.mark.parametrize(("change", "violates"), [
    ({"memory": 8192}, True), ({"memoryReservation": 2048}, False),  # the task has 4096 MiB
    ({"portMappings": [{"containerPort": 8080, "hostPort": 80}]}, True),
    ({"portMappings": [{"containerPort": 8080, "hostPort": 8080}]}, False),
])
def test_task_definitions_aws_refuses_are_reported(change: dict[str, Any], violates: bool) -> None:
    s = compliant_stack()
    edit_container(s, **change)
    assert bool(check("ecs-task-runs-on-ec2", *s.values())) == violates


def test_subnets_in_two_zones_pass() -> None:
    s = compliant_stack()
    service_subnets_in_one_zone(s)
    props(s, "subnet1")["availabilityZone"] = "us-east-1b"
    assert check("subnets-span-availability-zones", *s.values()) == []


def add_vpc_without_nat(s: Stack) -> None:
    s["vpc"] = fake("awsx:ec2:Vpc", "ms-vpc", {"natGateways": {"strategy": "None"},
                                               "subnetSpecs": [{"type": "Public"}, {"type": "Private"}]})


# (policy, how the compliant stack is broken). Each must make exactly that policy object.
Edit = Callable[[Stack], object]
VIOLATIONS: list[tuple[str, Edit]] = [
    ("ecr-scan-on-push", lambda s: props(s, "repo").update(imageScanningConfiguration={"scanOnPush": False})),
    ("ecr-immutable-tags", lambda s: props(s, "repo").update(imageTagMutability="MUTABLE")),
    ("ecr-kms-encryption", lambda s: props(s, "repo").update(encryptionConfigurations=[{"encryptionType": "AES256"}])),
    ("ecr-lifecycle-policy", lambda s: s.pop("lifecycle")),
    ("ecs-container-insights", lambda s: props(s, "cluster").update(settings=[])),
    ("ecs-managed-termination-protection",
     lambda s: props(s, "cp")["autoScalingGroupProvider"].update(managedTerminationProtection="DISABLED")),
    ("ecs-managed-draining", lambda s: props(s, "cp")["autoScalingGroupProvider"].update(managedDraining="DISABLED")),
    ("asg-multi-az-launch-template", lambda s: props(s, "asg").update(vpcZoneIdentifiers=["subnet-a"])),
    ("launch-template-imdsv2", lambda s: props(s, "lt")["metadataOptions"].update(httpTokens="optional")),
    ("launch-template-no-public-ip",
     lambda s: props(s, "lt")["networkInterfaces"][0].update(associatePublicIpAddress="true")),
    ("launch-template-encrypted-ebs",
     lambda s: props(s, "lt")["blockDeviceMappings"][0]["ebs"].update(encrypted=False)),
    ("launch-template-no-user-data-secrets",
     lambda s: props(s, "lt").update(userData=user_data(f"{ECS_USER_DATA}AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"))),
    ("launch-template-blocks-task-imds",
     lambda s: props(s, "lt").update(userData=user_data(ECS_USER_DATA.replace("IMDS=true", "IMDS=false")))),
    ("ecs-no-privileged-containers", lambda s: edit_container(s, privileged=True)),
    ("ecs-read-only-root-filesystem", lambda s: edit_container(s, readonlyRootFilesystem=False)),
    ("ecs-task-awsvpc-network-mode", lambda s: props(s, "td").update(pidMode="host")),
    ("ecs-non-root-user", lambda s: edit_container(s, user="root")),
    ("ecs-logging-configured", lambda s: edit_container(s, logConfiguration={"logDriver": "json-file"})),
    ("ecs-no-secrets-in-environment",
     lambda s: edit_container(s, environment=[{"name": "DB_PASSWORD", "value": "hunter2"}])),
    ("ecs-separate-task-and-execution-roles", lambda s: props(s, "td").update(taskRoleArn="arn:execution")),
    ("ecs-service-no-public-ip", lambda s: props(s, "service")["networkConfiguration"].update(assignPublicIp=True)),
    ("ecs-service-circuit-breaker",
     lambda s: props(s, "service").update(deploymentCircuitBreaker={"enable": True, "rollback": False})),
    ("ecs-service-deployment-percentages", lambda s: props(s, "service").update(deploymentMinimumHealthyPercent=50.0)),
    ("ecs-service-health-check-grace-period", no_grace_period),
    ("ecs-service-az-spread", lambda s: props(s, "service").update(orderedPlacementStrategies=[])),
    ("ecs-service-min-two-tasks", lambda s: props(s, "target").update(minCapacity=1.0)),
    ("alb-http-redirects-to-https",
     lambda s: props(s, "http").update(defaultActions=[{"type": "forward", "targetGroupArn": "arn:tg"}])),
    ("alb-modern-tls-policy", lambda s: props(s, "https").update(sslPolicy="ELBSecurityPolicy-2016-08")),
    ("alb-drop-invalid-headers", lambda s: props(s, "lb").update(dropInvalidHeaderFields=False)),
    ("alb-desync-mitigation", lambda s: props(s, "lb").update(desyncMitigationMode="monitor")),
    ("alb-deletion-protection", lambda s: props(s, "lb").update(enableDeletionProtection=False)),
    ("alb-access-logs", lambda s: props(s, "lb").pop("accessLogs")),
    ("alb-multi-az", lambda s: props(s, "lb").update(subnets=["subnet-c"])),
    ("target-group-health-check", lambda s: props(s, "tg")["healthCheck"].pop("path")),
    ("target-group-deregistration-delay", lambda s: props(s, "tg").pop("deregistrationDelay")),
    ("sg-ingress-only-through-alb", world_open_tasks),
    ("sg-rule-descriptions", lambda s: props(s, "tasks_out").pop("description")),
    ("no-inline-and-standalone-rule-mix", lambda s: props(s, "tasks_sg").update(
        egress=[{"description": "all out", "protocol": "-1", "fromPort": 0, "toPort": 0,
                 "cidrBlocks": ["10.0.0.0/8"]}])),
    ("iam-no-wildcard-actions-or-admin", lambda s: props(s, "task_policy").update(policy=json.dumps(
        {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))),
    ("iam-role-trust-scoped-to-service", lambda s: props(s, "task_role").update(assumeRolePolicy=json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))),
    ("log-group-retention-set", lambda s: props(s, "logs").pop("retentionInDays")),
    ("log-group-retention-one-year", lambda s: props(s, "logs").update(retentionInDays=30.0)),
    ("log-group-kms", lambda s: props(s, "logs").pop("kmsKeyId")),
    ("kms-key-rotation", lambda s: props(s, "key").update(enableKeyRotation=False)),
    ("ecs-service-no-launch-type-with-strategy", lambda s: props(s, "service").update(launchType="EC2")),
    ("ecs-termination-protection-prerequisites", lambda s: props(s, "asg").update(protectFromScaleIn=False)),
    ("ecs-capacity-provider-name-prefix", lambda s: props(s, "cp").update(name="ecs-model-serving")),
    ("ecs-service-depends-on-capacity-association", lambda s: drop_dependency(s, "service", "ccp")),
    ("lb-target-type-matches-network-mode", lambda s: props(s, "tg").update(targetType="instance")),
    ("lb-name-length", lambda s: props(s, "tg").update(name="model-serving-production-target-grp")),
    ("ecs-service-depends-on-listener-and-role-policies", lambda s: drop_dependency(s, "service", "exec_attach")),
    ("asg-force-delete", lambda s: props(s, "asg").update(forceDelete=False)),
    ("asg-ecs-managed-tag", lambda s: props(s, "asg").update(tags=[])),
    ("asg-warm-pool-no-reuse-on-scale-in", lambda s: props(s, "asg").update(
        warmPool={"poolState": "Stopped", "minSize": 1.0, "instanceReusePolicy": {"reuseOnScaleIn": True}})),
    ("desired-counts-ignored", lambda s: s["service"].ignore_changes.clear()),
    ("ecs-grace-period-covers-start-period", lambda s: props(s, "service").update(healthCheckGracePeriodSeconds=60.0)),
    ("ecs-task-fits-instance-type", lambda s: props(s, "td").update(memory="16384")),
    ("ecs-task-fits-instance-type", lambda s: props(s, "spot_asg")["mixedInstancesPolicy"]["launchTemplate"]
     ["overrides"].append({"instanceType": "c6i.large"})),  # one Spot type too small is enough
    ("ecs-task-fits-instance-type", lambda s: edit_container(s, resourceRequirements=[{"type": "GPU", "value": "1"}])),
    ("sg-no-unrestricted-egress", lambda s: props(s, "tasks_out").update(ipProtocol="-1", fromPort=None, toPort=None)),
    ("alb-https-on-443", lambda s: props(s, "http").update(port=443.0)),
    ("resource-policy-no-public-principal", lambda s: props(s, "bucket_policy").update(policy=json.dumps(
        {"Statement": [ELB_DELIVERY, TLS_ONLY, {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                "Resource": "arn:aws:s3:::logs/*"}]}))),
    ("s3-bucket-baseline", lambda s: props(s, "bucket_block").update(restrictPublicBuckets=False)),
    ("s3-bucket-baseline", lambda s: props(s, "bucket_expiry").update(
        rules=[{"id": "expire", "status": "Enabled", "expiration": {"days": 365.0}}])),  # no multipart abort
    ("ecs-instances-join-the-cluster", lambda s: props(s, "spot_lt").update(
        userData=user_data(ECS_USER_DATA.replace("ECS_CLUSTER=ms\n", "")))),
    ("ecs-roles-have-required-policies", lambda s: props(s, "instance_attach").update(
        policyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")),
    ("lb-container-port-exposed", lambda s: edit_container(s, portMappings=[{"containerPort": 9090}])),
    ("ecs-task-runs-on-ec2", lambda s: props(s, "td").update(requiresCompatibilities=["FARGATE"])),
    ("alb-internet-facing-in-public-subnets", lambda s: props(s, "lb").update(subnets=["subnet-a", "subnet-b"])),
    ("kms-key-grants-cloudwatch-logs", lambda s: props(s, "key").update(policy=json.dumps(
        {"Statement": [json.loads(LOGS_KEY_POLICY)["Statement"][0]]}))),
    ("alb-access-log-delivery", lambda s: props(s, "bucket_policy").update(policy=json.dumps(
        {"Statement": [TLS_ONLY]}))),
    ("autoscaling-min-not-above-max", lambda s: props(s, "target").update(minCapacity=4.0, maxCapacity=3.0)),
    ("ecs-log-group-in-stack", lambda s: edit_container(
        s, logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/someone-elses"}})),
    ("ecs-image-pinned", lambda s: edit_container(s, image="repo:latest")),
    ("vpc-private-subnets-have-egress", add_vpc_without_nat),
    ("subnets-span-availability-zones", service_subnets_in_one_zone),
    ("autoscaling-request-count-label",
     lambda s: props(s, "requests")["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]
     .update(resourceLabel="targetgroup/ms-prod-tg/73e2d6bc24d8a067")),
]


def test_every_policy_has_a_violation_case() -> None:
    assert {name for name, _ in VIOLATIONS} == set(BY_NAME)


@pytest.mark.parametrize(("policy", "change"), VIOLATIONS, ids=[name for name, _ in VIOLATIONS])
def test_policy_reports_its_violation_and_passes_the_compliant_resource(policy: str, change: Edit) -> None:
    assert check(policy, *compliant_stack().values()) == []
    broken = compliant_stack()
    change(broken)
    reported = evaluate(list(broken.values()))
    assert violated(reported) == {policy}, "\n".join(map(str, reported))
    assert all(v.message for v in reported)


# --- edges: (policy, resource type, inputs, extra fake() arguments, violation expected) ----------------------

LT = "aws:ec2/launchTemplate:LaunchTemplate"
CP = "aws:ecs/capacityProvider:CapacityProvider"
TG = "aws:lb/targetGroup:TargetGroup"
LB = "aws:lb/loadBalancer:LoadBalancer"
SERVICE = "aws:ecs/service:Service"
ASG = "aws:autoscaling/group:Group"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
SCHEDULED = "aws:appautoscaling/scheduledAction:ScheduledAction"
TD = "aws:ecs/taskDefinition:TaskDefinition"
SG = "aws:ec2/securityGroup:SecurityGroup"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
HEALTH = {"path": "/health", "interval": 10.0, "healthyThreshold": 2.0, "unhealthyThreshold": 3.0}
ECS_COUNT = {"serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount"}
EBS_TRUE = {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": True}}]}
PUBLIC_IP_BOOL = {"networkInterfaces": [{"associatePublicIpAddress": False}]}

EDGES: list[tuple[str, str, dict[str, Any], dict[str, Any], bool]] = [
    ("launch-template-encrypted-ebs", LT, EBS_TRUE, {}, False),  # a real boolean works as well as "true"
    ("launch-template-encrypted-ebs", LT, {}, {}, True),  # no block device: the AMI's default volume
    ("launch-template-no-public-ip", LT, PUBLIC_IP_BOOL, {}, False),
    ("launch-template-no-public-ip", LT, {}, {}, True),  # unset: the subnet decides
    ("launch-template-imdsv2", LT, {"metadataOptions": {"httpTokens": "required",
                                                        "httpPutResponseHopLimit": 2.0}}, {}, True),
    ("launch-template-imdsv2", LT, {}, {}, True),
    ("launch-template-imdsv2", LT, {"metadataOptions": {"httpEndpoint": "disabled"}}, {}, False),
    ("launch-template-no-user-data-secrets", LT, {"userData": "#!/bin/bash\nDB_PASSWORD=x\n"}, {}, True),  # raw
    ("launch-template-no-user-data-secrets", LT, {"userData": user_data("ECS_CLUSTER=ms\n")}, {}, False),
    ("ecs-capacity-provider-name-prefix", CP, {}, {"name": "ecs-ms"}, True),  # auto-named: the logical name
    ("ecs-capacity-provider-name-prefix", CP, {}, {"name": "FARGATE-ms"}, True),
    ("ecs-capacity-provider-name-prefix", CP, {"name": "cp-ms-1a2b3c4"}, {"name": "ecs-ms"}, False),  # name wins
    ("lb-name-length", TG, {}, {"name": "model-serving-production-tg"}, True),  # 27 + 8 > 32
    ("lb-name-length", TG, {}, {"name": "model-serving-production"}, False),  # 24 + 8 = 32
    ("lb-name-length", TG, {"namePrefix": "msprod"}, {}, False),
    ("lb-name-length", TG, {"namePrefix": "ms-prod"}, {}, True),
    ("lb-name-length", LB, {"name": "x" * 33}, {}, True),
    ("desired-counts-ignored", ASG, {}, {"ignore_changes": ["desiredCapacity"]}, False),
    ("desired-counts-ignored", ASG, {}, {"ignore_changes": ["desiredCount"]}, True),  # the service's name
    ("desired-counts-ignored", SERVICE, {}, {"ignore_changes": ["*"]}, False),
    ("iam-no-wildcard-actions-or-admin", ATTACHMENT, {"policyArn": ADMIN}, {}, True),
    ("iam-no-wildcard-actions-or-admin", ROLE, {"managedPolicyArns": [ADMIN]}, {}, True),
    ("iam-no-wildcard-actions-or-admin", "aws:iam/policy:Policy", {"policy": json.dumps(
        {"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}})}, {}, True),
    ("iam-no-wildcard-actions-or-admin", "aws:iam/policy:Policy", {"policy": json.dumps(
        {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]})}, {}, False),
    ("iam-role-trust-scoped-to-service", ROLE, {"assumeRolePolicy": trust("codebuild.amazonaws.com")}, {}, True),
    ("iam-role-trust-scoped-to-service", ROLE, {"assumeRolePolicy": trust(Action="sts:*")}, {}, True),
    ("alb-desync-mitigation", LB, {"dropInvalidHeaderFields": True}, {}, False),  # unset = AWS's defensive
    ("alb-http-redirects-to-https", "aws:lb/listener:Listener", {"protocol": "HTTPS", "port": 443.0}, {}, False),
    ("alb-modern-tls-policy", "aws:lb/listener:Listener", {"protocol": "HTTPS"}, {}, True),  # AWS's 2016 default
    ("alb-modern-tls-policy", "aws:lb/listener:Listener",
     {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-TLS13-1-3-2021-06"}, {}, False),
    ("ecs-service-min-two-tasks", SERVICE, {"desiredCount": 1.0, "schedulingStrategy": "DAEMON"}, {}, False),
    ("ecs-service-min-two-tasks", SCHEDULED, {**ECS_COUNT, "scalableTargetAction": {"minCapacity": 0.0}}, {}, True),
    ("ecs-service-min-two-tasks", SCHEDULED, {**ECS_COUNT, "scalableTargetAction": {"minCapacity": 2.0}}, {}, False),
    ("ecs-service-min-two-tasks", SCHEDULED, {**ECS_COUNT, "scalableTargetAction": {"maxCapacity": 9.0}}, {}, False),
    ("ecs-service-deployment-percentages", SERVICE, {}, {}, False),  # unset: AWS's 100/200
    # 150% still starts new tasks before stopping old ones (a slower deployment, not a stuck one) ...
    ("ecs-service-deployment-percentages", SERVICE, {"desiredCount": 3.0, "deploymentMinimumHealthyPercent": 100.0,
                                                     "deploymentMaximumPercent": 150.0}, {}, False),
    # ... unless the maximum, rounded down as ECS does, leaves no room above the minimum (1 task: 1.5 -> 1).
    ("ecs-service-deployment-percentages", SERVICE, {"desiredCount": 1.0, "deploymentMinimumHealthyPercent": 100.0,
                                                     "deploymentMaximumPercent": 150.0}, {}, True),
    ("ecs-service-deployment-percentages", SERVICE, {"deploymentMinimumHealthyPercent": 100.0,
                                                     "deploymentMaximumPercent": 100.0}, {}, True),
    ("ecs-service-health-check-grace-period", SERVICE, {}, {}, False),  # no load balancer: nothing to cover
    ("target-group-deregistration-delay", TG, {"deregistrationDelay": 300.0}, {}, True),
    ("log-group-retention-one-year", "aws:cloudwatch/logGroup:LogGroup", {}, {}, False),  # never expires
    ("kms-key-rotation", "aws:kms/key:Key", {"customerMasterKeySpec": "RSA_2048"}, {}, False),  # cannot rotate
    ("ecr-immutable-tags", "aws:ecr/repository:Repository", {}, {}, True),  # AWS's default is MUTABLE
    # IAM: admin and *FullAccess through every attachment resource; Resource "*"; PassRole escalation
    *[("iam-no-wildcard-actions-or-admin", type_, {key: value}, {}, True) for type_, key, value in (
        ("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive", "policyArns", [EXEC_POLICY, ADMIN]),
        ("aws:iam/userPolicyAttachment:UserPolicyAttachment", "policyArn",
         "arn:aws:iam::aws:policy/AmazonS3FullAccess"),
        ("aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive", "policyArns",
         ["arn:aws:iam::aws:policy/AmazonECS_FullAccess"]),
        (ROLE, "managedPolicyArns", ["arn:aws:iam::aws:policy/PowerUserAccess"]),
        ("aws:iam/policyAttachment:PolicyAttachment", "policyArn", "arn:aws:iam::aws:policy/IAMFullAccess"))],
    ("iam-no-wildcard-actions-or-admin", "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
     {"policyArns": [EXEC_POLICY, INSTANCE_POLICY, "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]}, {}, False),
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": statement("s3:GetObject", "*")}, {}, True),
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": statement(["kms:Decrypt"], "*")}, {}, True),
    ("iam-no-wildcard-actions-or-admin", ROLE, {"inlinePolicies": [
        {"name": "put", "policy": statement("dynamodb:PutItem", "*")}]}, {}, True),
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": statement(
        ["ecr:GetAuthorizationToken", "ec2:DescribeInstances", "cloudwatch:PutMetricData", "ecs:List*"], "*")}, {},
     False),  # actions AWS grants only on "*"
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": statement(
        ["cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricWidgetImage", "kms:GenerateRandom"], "*")}, {},
     False),  # also "*" only in the service authorization reference (dashboards, metric reads)
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": statement(
        "s3:GetObject", "arn:aws:s3:::models/*")}, {}, False),
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
        {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "arn:aws:ecs:us-east-1:1:task-definition/x:1"}]})},
     {}, True),
    ("iam-no-wildcard-actions-or-admin", ROLE_POLICY, {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/batch-task"},
        {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "arn:aws:ecs:us-east-1:1:task-definition/x:1"}]})},
     {}, False),
    # tasks and the instance's credentials
    ("launch-template-imdsv2", LT, {"metadataOptions": {"httpEndpoint": "disabled"},
                                    "userData": user_data(ECS_USER_DATA)}, {}, True),  # the agent needs IMDS
    ("launch-template-blocks-task-imds", LT, {"userData": user_data("#!/bin/bash\nECS_CLUSTER=ms\n"),
                                              "metadataOptions": {"httpTokens": "required",
                                                                  "httpPutResponseHopLimit": 1.0}}, {}, True),
    ("launch-template-blocks-task-imds", LT, {"userData": user_data("#!/bin/bash\nyum -y update\n")}, {}, False),
    ("launch-template-blocks-task-imds", LT, {"userData": user_data(
        "#!/bin/bash\necho ECS_CLUSTER=ms >> /etc/ecs/ecs.config\n"
        "echo 'ECS_AWSVPC_BLOCK_IMDS=true' >> /etc/ecs/ecs.config\n")},
     {}, False),
    ("launch-template-blocks-task-imds", LT, {"userData": user_data(
        "#!/bin/bash\necho ECS_CLUSTER=ms >> /etc/ecs/ecs.config\n# ECS_AWSVPC_BLOCK_IMDS=true\n")}, {}, True),
    ("ecs-no-privileged-containers", TD, containers(linuxParameters={"capabilities": {"add": ["SYS_ADMIN"]}}), {},
     True),
    ("ecs-no-privileged-containers", TD, containers(linuxParameters={"capabilities": {"add": ["CAP_NET_ADMIN"]}}),
     {}, True),
    ("ecs-no-privileged-containers", TD, containers(linuxParameters={"devices": [{"hostPath": "/dev/mem"}]}), {},
     True),
    ("ecs-no-privileged-containers", TD, containers(linuxParameters={
        "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]}, "initProcessEnabled": True}), {}, False),
    # network and resource policies
    ("sg-no-unrestricted-egress", SG, {"egress": [{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0,
                                                   "cidrBlocks": ["0.0.0.0/0"]}]}, {}, True),
    ("sg-no-unrestricted-egress", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
     {"ipProtocol": "tcp", "fromPort": 0.0, "toPort": 65535.0, "cidrIpv6": "::/0"}, {}, True),
    ("sg-no-unrestricted-egress", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
     {"ipProtocol": "-1", "cidrIpv4": "10.0.0.0/16"}, {}, False),
    ("sg-no-unrestricted-egress", "aws:ec2/securityGroupRule:SecurityGroupRule",
     {"type": "egress", "protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["0.0.0.0/0"]}, {},
     False),
    ("resource-policy-no-public-principal", "aws:kms/key:Key", {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*"}]})}, {}, True),
    ("resource-policy-no-public-principal", "aws:ecr/repositoryPolicy:RepositoryPolicy", {"policy": json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"}]})}, {}, True),
    ("resource-policy-no-public-principal", "aws:kms/key:Key", {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}]})}, {}, False),
    ("s3-bucket-baseline", "aws:s3/bucket:Bucket", {}, {}, True),
    ("ecs-logging-configured", TD, {"containerDefinitions": json.dumps([
        container(logConfiguration={"logDriver": "awsfirelens", "options": {"Name": "cloudwatch_logs"}}),
        container(name="log-router", firelensConfiguration={"type": "fluentbit"})])}, {}, False),
    ("ecs-logging-configured", TD, containers(logConfiguration={"logDriver": "awsfirelens"}), {}, True),  # no router
    ("resource-policy-no-public-principal", "aws:s3/bucketPolicy:BucketPolicy", {"policy": json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::logs/*",
         "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]})}, {}, True),  # TLS narrows no one
    # deployability and reliability
    ("autoscaling-min-not-above-max", ASG, {"minSize": 3.0, "maxSize": 2.0}, {}, True),
    ("autoscaling-min-not-above-max", ASG, {"minSize": 2.0, "maxSize": 2.0}, {}, False),
    *[("ecs-image-pinned", TD, containers(image=image), {}, violates) for image, violates in (
        ("repo", True), ("repo:LATEST", True), ("registry.example.com:5000/team/repo", True),
        ("public.ecr.aws/acme/server:stable", True), ("registry.example.com:5000/team/repo:1.4.2", False),
        ("repo@sha256:" + "ab" * 32, False), ("repo:latest@sha256:" + "ab" * 32, False))],
    ("target-group-health-check", TG, {"healthCheck": {**HEALTH, "matcher": "200-499"}}, {}, True),
    ("target-group-health-check", TG, {"healthCheck": {**HEALTH, "matcher": "200,503"}}, {}, True),
    ("target-group-health-check", TG, {"healthCheck": {**HEALTH, "matcher": "200-399"}}, {}, False),
    ("alb-https-on-443", "aws:lb/listener:Listener", {"port": 443.0, "protocol": "HTTPS"}, {}, False),
    ("alb-https-on-443", "aws:lb/listener:Listener", {"port": 8443.0, "protocol": "HTTP"}, {}, False),
    ("ecs-service-az-spread", SERVICE, {"orderedPlacementStrategies": [
        {"type": "binpack", "field": "memory"}, {"type": "spread", "field": "attribute:ecs.availability-zone"}]}, {},
     True),
    ("ecs-service-az-spread", SERVICE, {"networkConfiguration": {"subnets": ["subnet-a"]}, "orderedPlacementStrategies":
        [{"type": "spread", "field": "attribute:ecs.availability-zone"}]}, {}, True),
    ("vpc-private-subnets-have-egress", "awsx:ec2:Vpc", {"natGateways": {"strategy": "None"}}, {}, True),
    ("vpc-private-subnets-have-egress", "awsx:ec2:Vpc", {"natGateways": {"strategy": "None"},
                                                         "subnetSpecs": [{"type": "Public"}]}, {}, False),
    ("vpc-private-subnets-have-egress", "awsx:ec2:Vpc", {"natGateways": {"strategy": "Single"}}, {}, False),
]


@pytest.mark.parametrize(("policy", "type_", "inputs", "extra", "violates"), EDGES,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(EDGES)])
def test_policy_edge(policy: str, type_: str, inputs: dict[str, Any], extra: dict[str, Any], violates: bool) -> None:
    messages = check(policy, fake(type_, props=inputs, **extra))
    assert bool(messages) == violates, messages


def test_policies_ignore_resource_types_they_do_not_govern() -> None:
    unrelated = fake("aws:sqs/queue:Queue", "jobs", {"visibilityTimeoutSeconds": 30.0})
    assert evaluate([unrelated]) == []


def test_policies_read_properties_through_the_engines_read_only_proxies() -> None:
    """The engine hands nested values as Mapping/Sequence proxies; a rule that tests for dict/list would pass
    silently here and in production, so the compliant stack must also fail where it should when nested."""
    s = compliant_stack()
    props(s, "lt")["blockDeviceMappings"].append({"deviceName": "/dev/xvdb", "ebs": {"encrypted": "false"}})
    assert check("launch-template-encrypted-ebs", *s.values()) == ["EBS volume /dev/xvdb must set encrypted true"]


def test_every_policy_names_its_sources_and_kind() -> None:
    for policy in POLICIES:
        assert "Sources: " in policy.description, policy.name
        assert policy.tags and policy.tags[0] in ("security", "deployability"), policy.name
        assert policy.remediation_steps, policy.name


# --- secrets: one definition (infra/secret_patterns.py) for environment, command, entryPoint and user data -------

GOOD_SETTINGS = [("TOKENIZERS_PARALLELISM", "false"), ("MAX_NEW_TOKENS", "256"), ("PAD_TOKEN_ID", "0"),
                 ("HF_TOKEN_FILE", "/run/secrets/hf"), ("DATABASE_URL", "postgres://db.internal:5432/models"),
                 # a reference the shell (or the app) fills in from a secret is not itself a secret
                 ("DATABASE_URL", "postgres://app:${DB_PASSWORD}@db.internal:5432/models")]
BAD_SETTINGS = [("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz"), ("DATABASE_URL", "postgres://u:p@h/db"),
                ("UPLOAD_KEY", "AKIAIOSFODNN7EXAMPLE"), ("DB_PASSWORD", "hunter2"),
                ("CELERY_BROKER_URL", "redis://:s3cretpw@redis.internal:6379/0")]  # Redis URLs have no user
IMDSV2_FETCH = ('TOKEN=$(curl -sX PUT "http://169.254.169.254/latest/api/token" '
                '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600")\n'
                'curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/instance-id\n')


def _secret_cases(settings: list[tuple[str, str]]) -> list[tuple[str, str, dict[str, Any]]]:
    cases = []
    for name, value in settings:
        cases += [
            ("ecs-no-secrets-in-environment", TD, containers(environment=[{"name": name, "value": value}])),
            ("ecs-no-secrets-in-environment", TD, containers(command=["serve", f"--{name.lower()}={value}"])),
            ("ecs-no-secrets-in-environment", TD, containers(entryPoint=["sh", "-c", f"{name}={value} exec serve"])),
            ("ecs-no-secrets-in-environment", TD, containers(command=["serve", f"--{name.lower().replace('_', '-')}",
                                                                      value])),
            ("launch-template-no-user-data-secrets", LT,
             {"userData": user_data(f"#!/bin/bash\nexport {name}={value}\n")}),
        ]
    return cases


@pytest.mark.parametrize(("policy", "type_", "inputs"), [
    *_secret_cases(GOOD_SETTINGS), ("launch-template-no-user-data-secrets", LT, {"userData": user_data(IMDSV2_FETCH)})])
def test_ordinary_settings_and_the_imdsv2_token_fetch_are_not_secrets(policy: str, type_: str,
                                                                       inputs: dict[str, Any]) -> None:
    assert check(policy, fake(type_, props=inputs)) == []


@pytest.mark.parametrize(("policy", "type_", "inputs"), _secret_cases(BAD_SETTINGS))
def test_credentials_are_reported_wherever_they_are_written(policy: str, type_: str, inputs: dict[str, Any]) -> None:
    messages = check(policy, fake(type_, props=inputs))
    assert messages and not any(value in " ".join(messages) for _, value in BAD_SETTINGS)  # never echo the secret


def test_the_pack_ships_the_settings_own_secret_definition() -> None:
    from infra import secret_patterns  # noqa: PLC0415
    from policy.rules.shared import secret_patterns as shipped  # noqa: PLC0415

    assert Path(shipped.__file__).read_text() == Path(secret_patterns.__file__).read_text()


def test_an_instance_type_newer_than_the_data_is_not_blocked() -> None:
    s = compliant_stack()
    props(s, "lt")["instanceType"] = "c8i.2xlarge"  # not (yet) in instance_types.json
    assert check("ecs-task-fits-instance-type", *s.values()) == []
    props(s, "lt")["instanceType"] = "c6i.large"  # known and too small
    assert check("ecs-task-fits-instance-type", *s.values())
