"""The model-serving stack: validated settings in, composed infrastructure pieces out.

Every piece lives in infra/ as one ComponentResource with its own args; infra/settings/args.py derives
them from the settings (and holds every dev/prod difference); this file only wires the pieces together.
"""

import pulumi
import pulumi_aws as aws

from infra.autoscaling import Autoscaling
from infra.cluster import Cluster
from infra.image import Image
from infra.loadbalancer import LoadBalancer
from infra.logs import Logging
from infra.network import Network
from infra.observability import Observability
from infra.registry import Registry
from infra.release import Release
from infra.service import Service
from infra.settings import load_settings
from infra.settings.args import component_args, provider_args
from infra.settings.strategy import deployment_extra_tasks, service_strategy, transition_step
from infra.task import Task

settings = load_settings()
args = component_args(settings)
name = settings.name_prefix
if settings.is_prod and not settings.certificate_arn:
    pulumi.log.warn("environmentClass prod without certificateArn: the load balancer serves plain HTTP. "
                    "Set certificateArn to serve HTTPS and redirect HTTP to it.")

# Default tags reach every taggable resource, so cost and ownership reports need no per-resource tags. An
# explicit provider reads no `aws:` config itself: provider_args hands it every one the stack file sets.
provider = aws.Provider("aws", **provider_args(settings))
opts = pulumi.ResourceOptions(providers={"aws": provider})

network = Network(name, args.network, opts=opts)
registry = Registry(name, args.registry, opts=opts)
logs = Logging(name, args.logging, opts=opts)
cluster = Cluster(name, args.cluster, private_subnet_ids=network.private_subnet_ids,
                  instance_security_group_id=network.instance_security_group.id, opts=opts)
# imageBuild: build app/ and run the pushed digest; otherwise the configured tag, digest or URI.
image = (Image(name, args.image, repository=registry.repository, opts=opts).image_uri if args.image
         else registry.repository_url.apply(settings.image_ref.in_repository))
task = Task(name, args.task, image=image, log_group_name=logs.log_group.name, opts=opts)
load_balancer = LoadBalancer(name, args.load_balancer, vpc_id=network.vpc_id,
                             public_subnet_ids=network.public_subnet_ids,
                             security_group_id=network.alb_security_group.id, opts=opts)
# Blue/green, linear and canary releases: alternate target group, listener rules, test listener, release check.
release = None
if args.release:
    # The release check leaves the VPC through the NAT gateways: their addresses may reach the test listener.
    nat_ips: pulumi.Input[list[str]] = (
        network.vpc.eips.apply(lambda eips: pulumi.Output.all(*[eip.public_ip for eip in eips or []]))
        if network.vpc else [])
    release = Release(name, args.release, load_balancer=load_balancer, load_balancer_args=args.load_balancer,
                      vpc_id=network.vpc_id, alb_security_group_id=network.alb_security_group.id,
                      private_subnet_ids=network.private_subnet_ids, nat_public_ips=nat_ips,
                      log_kms_key_arn=logs.key.arn if logs.key else None, opts=opts)
# The service's deployment alarms must exist before it deploys; the alarms on the service's own metrics and the
# dashboard follow it (watch_service below).
observability = Observability(
    name, args.observability, cluster_name=cluster.cluster.name,
    load_balancer_arn_suffix=load_balancer.load_balancer.arn_suffix,
    target_group_arn_suffixes=[load_balancer.target_group.arn_suffix,
                               *([release.alternate_target_group.arn_suffix] if release else [])],
    capacity_provider_names={group: g.capacity_provider.name for group, g in cluster.groups.items()},
    auto_scaling_group_names={group: g.auto_scaling_group.name for group, g in cluster.groups.items()}, opts=opts)
if transition_step(settings):
    pulumi.log.warn(f"deploymentStrategy: {transition_step(settings)}")
service = Service(
    name, args.service,
    cluster_arn=cluster.cluster.arn,
    strategy=cluster.strategy,
    task_definition_arn=task.task_definition.arn,
    target_group_arn=load_balancer.target_group.arn,
    private_subnet_ids=network.private_subnet_ids,
    task_security_group_id=network.task_security_group.id,
    # Waiting for a component waits for all its resources: the capacity-provider association and instance
    # policies, the listeners, the execution and task role policies (infra/service.py says why).
    depends_on=[cluster, load_balancer, task, *observability.deployment_alarms, *([release] if release else [])],
    release=release.traffic if release else None,
    opts=opts,
)
observability.watch_service(service.service.name)
Autoscaling(name, args.autoscaling, cluster_name=cluster.cluster.name, service_name=service.service.name,
            load_balancer_arn_suffix=load_balancer.load_balancer.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group.arn_suffix,
            alternate_target_group_arn_suffix=release.alternate_target_group.arn_suffix if release else None,
            opts=opts)

pulumi.export("serviceUrl", load_balancer.url)
pulumi.export("repositoryUrl", registry.repository_url)
pulumi.export("image", image)
pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("serviceName", service.service.name)
# Output names predate the group names (onDemand, spot); scripts read them, so they stay.
on_demand, spot = cluster.groups["onDemand"], cluster.groups.get("spot")
pulumi.export("autoScalingGroupName", on_demand.auto_scaling_group.name)
pulumi.export("capacityProviderName", on_demand.capacity_provider.name)
if spot:
    pulumi.export("spotAutoScalingGroupName", spot.auto_scaling_group.name)
    pulumi.export("spotCapacityProviderName", spot.capacity_provider.name)
pulumi.export("capacityPlan", {plan.name: plan.as_output()
                               for plan in settings.capacity_plan(deployment_extra_tasks(settings))})
# What the service runs after this update: the value previousDeploymentStrategy takes when changing it.
pulumi.export("deploymentStrategy", service_strategy(settings))
if release:
    pulumi.export("testListenerUrl", release.test_url)
pulumi.export("logGroupName", logs.log_group.name)
pulumi.export("dashboardUrl", observability.dashboard_url)
# The stack's alarms: tools/verify_deployment.py fails while one of alarmNames is in ALARM.
pulumi.export("alarmNamePrefix", f"{name}-")
pulumi.export("alarmNames", observability.alarm_names)
if observability.topic:
    pulumi.export("alarmTopicArn", observability.topic.arn)
# What else tools/verify_deployment.py checks after every `pulumi up`.
pulumi.export("environmentClass", settings.environment_class)
pulumi.export("taskDefinitionArn", task.task_definition.arn)
pulumi.export("targetGroupArn", load_balancer.target_group.arn)
# What tools/preflight.py compares before the next update (a changed port replaces the target groups).
pulumi.export("containerPort", settings.container_port)
