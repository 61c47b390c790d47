"""Load balancer: internet-facing ALB, the `ip` target group of the tasks, and the listeners.

Without a certificate, port 80 forwards to the tasks. With `certificateArn`, port 80 answers 301 to HTTPS
and port 443 terminates TLS 1.2/1.3 only.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.access_logs import AccessLogs, AccessLogsArgs
from infra.naming import LOAD_BALANCER_NAME_MAX, TARGET_GROUP_NAME_MAX, bounded_name
from infra.network import HTTP_PORT, HTTPS_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class LoadBalancerArgs:
    name_prefix: str
    idle_timeout_seconds: int
    deletion_protection: bool
    access_logs: AccessLogsArgs | None  # None: no access-log bucket
    certificate_arn: str  # "": HTTP only
    target_port: int
    deregistration_delay_seconds: int
    health_check_path: str
    health_check_matcher: str
    health_check_interval_seconds: int
    health_check_timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int


def target_group(name: str, lb: LoadBalancerArgs, vpc_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions) -> aws.lb.TargetGroup:
    """The tasks' target group; a release's alternate group (infra/release.py) is made here too, so both
    always share one health check."""
    return aws.lb.TargetGroup(
        name,
        vpc_id=vpc_id,
        target_type="ip",  # awsvpc tasks register by ENI address
        protocol="HTTP",
        port=lb.target_port,
        deregistration_delay=lb.deregistration_delay_seconds,
        # Inference latency varies per request: route to the target with the fewest in flight.
        load_balancing_algorithm_type="least_outstanding_requests",
        health_check=aws.lb.TargetGroupHealthCheckArgs(
            enabled=True,
            protocol="HTTP",
            port="traffic-port",
            path=lb.health_check_path,
            matcher=lb.health_check_matcher,
            interval=lb.health_check_interval_seconds,
            timeout=lb.health_check_timeout_seconds,
            healthy_threshold=lb.healthy_threshold,
            unhealthy_threshold=lb.unhealthy_threshold,
        ),
        opts=opts,
    )


class LoadBalancer(pulumi.ComponentResource):
    access_logs: AccessLogs | None
    load_balancer: aws.lb.LoadBalancer
    target_group: aws.lb.TargetGroup
    http_listener: aws.lb.Listener
    https_listener: aws.lb.Listener | None
    listeners: list[aws.lb.Listener]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, vpc_id: pulumi.Input[str],
                 public_subnet_ids: pulumi.Input[Sequence[str]], security_group_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("model-serving:infra:LoadBalancer", name, None, opts)
        lb = args
        child = pulumi.ResourceOptions(parent=self)

        self.access_logs = AccessLogs(f"{name}-logs", lb.access_logs, opts=child) if lb.access_logs else None
        self.load_balancer = aws.lb.LoadBalancer(
            bounded_name(lb.name_prefix, "alb", LOAD_BALANCER_NAME_MAX),
            load_balancer_type="application",
            internal=False,
            subnets=public_subnet_ids,
            security_groups=[security_group_id],
            idle_timeout=lb.idle_timeout_seconds,
            drop_invalid_header_fields=True,
            desync_mitigation_mode="defensive",
            enable_deletion_protection=lb.deletion_protection,
            access_logs=aws.lb.LoadBalancerAccessLogsArgs(
                bucket=self.access_logs.bucket.id, prefix=self.access_logs.prefix, enabled=True,
            ) if self.access_logs else None,
            # ALB checks bucket permissions when logging is switched on.
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.access_logs.policy] if self.access_logs else []),
        )
        self.target_group = target_group(bounded_name(lb.name_prefix, "tg", TARGET_GROUP_NAME_MAX), lb, vpc_id,
                                         child)

        forward = aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=self.target_group.arn)
        self.https_listener = None
        if lb.certificate_arn:
            self.https_listener = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.load_balancer.arn,
                port=HTTPS_PORT,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=lb.certificate_arn,
                default_actions=[forward],
                opts=child,
            )
            http_action = aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(
                    protocol="HTTPS", port=str(HTTPS_PORT), status_code="HTTP_301"),
            )
        else:
            http_action = forward
        self.http_listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.load_balancer.arn,
            port=HTTP_PORT,
            protocol="HTTP",
            default_actions=[http_action],
            opts=child,
        )
        self.listeners = [self.http_listener] + ([self.https_listener] if self.https_listener else [])

        scheme = "https" if self.https_listener else "http"
        self.url = pulumi.Output.concat(scheme, "://", self.load_balancer.dns_name)
        self.register_outputs({"url": self.url})
