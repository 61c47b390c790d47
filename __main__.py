"""The model-serving stack: validated settings in, composed infrastructure pieces out.

Every piece lives in infra/ as one ComponentResource; this file only wires their outputs together.
"""

import pulumi
import pulumi_aws as aws

from infra.autoscaling import Autoscaling
from infra.cluster import Cluster
from infra.image import Image
from infra.loadbalancer import LoadBalancer
from infra.logs import Logging
from infra.network import Network
from infra.registry import Registry
from infra.service import Service
from infra.settings import load_settings
from infra.task import Task

settings = load_settings()
name = settings.name_prefix
if settings.is_prod and not settings.load_balancer.certificate_arn:
    pulumi.log.warn("environmentClass prod without certificateArn: the load balancer serves plain HTTP. "
                    "Set certificateArn to serve HTTPS and redirect HTTP to it.")

# Default tags reach every taggable resource, so cost and ownership reports need no per-resource tags.
provider = aws.Provider("aws", region=aws.config.region,
                        default_tags=aws.ProviderDefaultTagsArgs(tags=settings.tags))
opts = pulumi.ResourceOptions(providers={"aws": provider})

network = Network(name, settings, opts=opts)
registry = Registry(name, settings, opts=opts)
logs = Logging(name, settings, opts=opts)
cluster = Cluster(name, settings, private_subnet_ids=network.private_subnet_ids,
                  instance_security_group_id=network.instance_security_group.id, opts=opts)
# imageBuild: build app/ and run the pushed digest; otherwise the configured tag, digest or URI.
image = (Image(name, settings, repository=registry.repository, opts=opts).image_uri if settings.task.image_build
         else registry.repository_url.apply(settings.task.image.in_repository))
task = Task(name, settings, image=image, log_group_name=logs.log_group.name, opts=opts)
load_balancer = LoadBalancer(name, settings, vpc_id=network.vpc_id, public_subnet_ids=network.public_subnet_ids,
                             security_group_id=network.alb_security_group.id, opts=opts)
service = Service(
    name, settings,
    cluster_arn=cluster.cluster.arn,
    strategy=cluster.strategy,
    task_definition_arn=task.task_definition.arn,
    target_group_arn=load_balancer.target_group.arn,
    private_subnet_ids=network.private_subnet_ids,
    task_security_group_id=network.task_security_group.id,
    depends_on=[cluster.capacity_providers, *load_balancer.listeners, *cluster.instance_role_attachments,
                *task.execution_role_attachments, *task.task_role_attachments],
    opts=opts,
)
Autoscaling(name, settings, cluster_name=cluster.cluster.name, service_name=service.service.name,
            load_balancer_arn_suffix=load_balancer.load_balancer.arn_suffix,
            target_group_arn_suffix=load_balancer.target_group.arn_suffix, opts=opts)

pulumi.export("serviceUrl", load_balancer.url)
pulumi.export("repositoryUrl", registry.repository_url)
pulumi.export("image", image)
pulumi.export("clusterName", cluster.cluster.name)
pulumi.export("serviceName", service.service.name)
pulumi.export("autoScalingGroupName", cluster.on_demand.auto_scaling_group.name)
pulumi.export("capacityProviderName", cluster.on_demand.capacity_provider.name)
if cluster.spot:
    pulumi.export("spotAutoScalingGroupName", cluster.spot.auto_scaling_group.name)
    pulumi.export("spotCapacityProviderName", cluster.spot.capacity_provider.name)
pulumi.export("capacityPlan", {provider.name: provider.as_output() for provider in settings.capacity_plan()})
pulumi.export("logGroupName", logs.log_group.name)
