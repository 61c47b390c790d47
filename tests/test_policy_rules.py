"""Each policy alone: a complying resource passes and a violating one is reported.

`compliant_stack()` is a small, fully linked ECS-on-EC2 stack that obeys every policy (the first test
proves it against the whole pack). Each case edits one thing in a fresh copy and expects exactly one policy
to object; the extra cases pin down the edges (string booleans, auto-naming, unset defaults).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from policy.rules import BY_NAME, POLICIES
from tests.harness import Registered
from tests.policy_support import Fake, check, evaluate, fake, violated

Stack = dict[str, Registered]

EXEC_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
LABEL = "app/ms-prod-alb/50dc6c495c0c9188/targetgroup/ms-prod-tg/73e2d6bc24d8a067"


def trust(service: str = "ecs-tasks.amazonaws.com", **statement: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole", **statement}]})


def user_data(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def container(**changes: Any) -> dict[str, Any]:
    return {
        "name": "model-server", "image": "repo:v1", "essential": True, "privileged": False,
        "readonlyRootFilesystem": True, "user": "10001:10001",
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/ms/1"}},
        "environment": [{"name": "MODEL_NAME", "value": "resnet"}],
        "healthCheck": {"command": ["CMD-SHELL", "true"], "startPeriod": 120},
        **changes,
    }


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
    s["key"] = make("aws:kms/key:Key", "ms-logs", {"enableKeyRotation": True})
    s["logs"] = make("aws:cloudwatch/logGroup:LogGroup", "ms", {"retentionInDays": 365.0, "kmsKeyId": "arn:key"},
                     links={"kmsKeyId": [s["key"]]})
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
        "userData": user_data("#!/bin/bash\nECS_CLUSTER=ms\nECS_ENABLE_TASK_IAM_ROLE=true\n")})
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
    s["spot_lt"] = make("aws:ec2/launchTemplate:LaunchTemplate", "ms-spot", spot_lt)
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
        links={"securityGroups": [s["alb_sg"]]})
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
        "networkConfiguration": {"assignPublicIp": False, "subnets": ["subnet-a"], "securityGroups": ["sg-tasks"]},
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "deploymentMinimumHealthyPercent": 100.0, "deploymentMaximumPercent": 200.0,
        "healthCheckGracePeriodSeconds": 180.0,
        "loadBalancers": [{"targetGroupArn": "arn:tg", "containerName": "model-server", "containerPort": 8080.0}],
        "orderedPlacementStrategies": [{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                       {"type": "binpack", "field": "memory"}]},
        links={"taskDefinition": [s["td"]], "loadBalancers": [s["tg"]],
               "capacityProviderStrategies": [s["cp"], s["spot_cp"]],
               "cluster": [s["cluster"]], "networkConfiguration": [s["tasks_sg"]]},
        depends_on=[s["ccp"], s["https"], s["http"], s["exec_attach"], s["task_policy"]],
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
     lambda s: props(s, "lt").update(userData=user_data("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"))),
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
    ("desired-counts-ignored", lambda s: s["service"].ignore_changes.clear()),
    ("ecs-grace-period-covers-start-period", lambda s: props(s, "service").update(healthCheckGracePeriodSeconds=60.0)),
    ("ecs-task-fits-instance-type", lambda s: props(s, "td").update(memory="16384")),
    ("ecs-task-fits-instance-type", lambda s: props(s, "spot_asg")["mixedInstancesPolicy"]["launchTemplate"]
     ["overrides"].append({"instanceType": "c6i.large"})),  # one Spot type too small is enough
    ("ecs-task-fits-instance-type", lambda s: edit_container(s, resourceRequirements=[{"type": "GPU", "value": "1"}])),
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
    ("iam-role-trust-scoped-to-service", ROLE, {"assumeRolePolicy": trust("lambda.amazonaws.com")}, {}, True),
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
    ("ecs-service-health-check-grace-period", SERVICE, {}, {}, False),  # no load balancer: nothing to cover
    ("target-group-deregistration-delay", TG, {"deregistrationDelay": 300.0}, {}, True),
    ("log-group-retention-one-year", "aws:cloudwatch/logGroup:LogGroup", {}, {}, False),  # never expires
    ("kms-key-rotation", "aws:kms/key:Key", {"customerMasterKeySpec": "RSA_2048"}, {}, False),  # cannot rotate
    ("ecr-immutable-tags", "aws:ecr/repository:Repository", {}, {}, True),  # AWS's default is MUTABLE
]


@pytest.mark.parametrize(("policy", "type_", "inputs", "extra", "violates"), EDGES,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(EDGES)])
def test_policy_edge(policy: str, type_: str, inputs: dict[str, Any], extra: dict[str, Any], violates: bool) -> None:
    messages = check(policy, fake(type_, props=inputs, **extra))
    assert bool(messages) == violates, messages


def test_policies_ignore_resource_types_they_do_not_govern() -> None:
    unrelated = fake("aws:s3/bucket:Bucket", "logs", {"forceDestroy": True})
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
