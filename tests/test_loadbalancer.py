"""Load balancer: the ALB, the ip target group's health check, listeners and access logs."""

import json

import pytest

from infra.access_logs import bucket_policy
from infra.loadbalancer import TLS_POLICY
from infra.settings.args import elb_account_arn
from tests.conftest import CERTIFICATE, run_with, setting
from tests.harness import ELB_ACCOUNT_ARN, StackRun
from tests.test_settings import args_of

LB = "aws:lb/loadBalancer:LoadBalancer"
TG = "aws:lb/targetGroup:TargetGroup"
LISTENER = "aws:lb/listener:Listener"


@pytest.mark.parametrize(("stack", "protected"), [("dev", False), ("prod", True)])
def test_alb_is_public_hardened_and_protected_in_prod(stack: str, protected: bool,
                                                      request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(stack)
    lb = run.one(LB)
    assert lb["loadBalancerType"] == "application"
    assert lb["internal"] is False
    assert lb["dropInvalidHeaderFields"] is True
    assert lb["desyncMitigationMode"] == "defensive"
    assert lb["enableDeletionProtection"] is protected
    assert lb["idleTimeout"] == int(setting(run, "albIdleTimeoutSeconds"))


def test_target_group_is_ip_with_the_tuned_health_check(run: StackRun) -> None:
    tg = run.one(TG, "-tg")
    assert tg["targetType"] == "ip"
    assert (tg["protocol"], tg["port"]) == ("HTTP", 8080)
    assert tg["deregistrationDelay"] == int(setting(run, "deregistrationDelaySeconds"))
    assert tg["loadBalancingAlgorithmType"] == "least_outstanding_requests"
    assert tg["healthCheck"] == {"enabled": True, "protocol": "HTTP", "port": "traffic-port", "path": "/health",
                                 "matcher": "200", "interval": 10, "timeout": 5, "healthyThreshold": 2,
                                 "unhealthyThreshold": 3}


def test_health_check_path_comes_from_config(dev_variant: StackRun) -> None:
    assert dev_variant.one(TG, "-tg")["healthCheck"]["path"] == "/v1/ready"


def test_without_a_certificate_http_forwards_to_the_target_group(plain_http: StackRun) -> None:
    run = plain_http
    listener = run.one(LISTENER, "-http")  # prod has the release's test listener too (tests/test_release.py)
    assert (listener["port"], listener["protocol"]) == (80, "HTTP")
    assert listener["defaultActions"] == [{"type": "forward", "targetGroupArn": run.one(TG, "-tg").state["arn"]}]
    assert listener["loadBalancerArn"] == run.one(LB).state["arn"]


def test_with_a_certificate_http_redirects_to_a_modern_https_listener(prod_variant: StackRun) -> None:
    run = prod_variant
    listeners = {listener["port"]: listener for listener in run.of_type(LISTENER)}
    assert listeners[80]["defaultActions"] == [{"type": "redirect", "redirect": {
        "protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}}]
    https = listeners[443]
    assert (https["protocol"], https["sslPolicy"], https["certificateArn"]) == ("HTTPS", TLS_POLICY, CERTIFICATE)
    assert TLS_POLICY == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["defaultActions"] == [{"type": "forward", "targetGroupArn": run.one(TG, "-tg").state["arn"]}]


def test_prod_writes_access_logs_to_a_private_retained_bucket(prod: StackRun) -> None:
    bucket = prod.one("aws:s3/bucket:Bucket")
    lb = prod.one(LB)
    assert lb["accessLogs"] == {"bucket": f"{bucket.name}-id", "prefix": "alb", "enabled": True}
    assert prod.depends_on(lb, prod.one("aws:s3/bucketPolicy:BucketPolicy"))
    assert bucket.retain_on_delete is True and bucket["forceDestroy"] is False
    block = prod.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block[flag] is True for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                "restrictPublicBuckets"))
    statements = json.loads(prod.one("aws:s3/bucketPolicy:BucketPolicy")["policy"])["Statement"]
    assert statements[0]["Principal"] == {"AWS": ELB_ACCOUNT_ARN}
    assert statements[0]["Resource"] == f"{bucket.state['arn']}/alb/AWSLogs/123456789012/*"
    assert statements[2]["Effect"] == "Deny" and statements[2]["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}}


def test_dev_has_no_access_log_bucket(dev: StackRun) -> None:
    assert dev.of_type("aws:s3/bucket:Bucket") == []
    assert "accessLogs" not in dev.one(LB).inputs


def test_prod_without_a_certificate_warns_that_it_serves_plain_http(prod_variant: StackRun, dev: StackRun) -> None:
    prod = run_with("prod", certificateArn="")
    assert any("environmentClass prod without certificateArn" in w for w in prod.warnings)
    assert not any("certificateArn" in w for w in prod_variant.warnings + dev.warnings)


def test_prod_destroy_keeps_the_log_bucket_with_what_keeps_it_private_and_bounded(prod: StackRun) -> None:
    bucket = prod.one("aws:s3/bucket:Bucket")
    children = [r for r in prod.resources if r.parent == bucket.parent and r.type.startswith("aws:s3/")]
    assert {r.type.split(":")[-1] for r in children} == {
        "Bucket", "BucketPublicAccessBlock", "BucketOwnershipControls", "BucketServerSideEncryptionConfiguration",
        "BucketLifecycleConfiguration", "BucketPolicy"}
    assert all(r.retain_on_delete for r in children)
    (rule,) = prod.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]
    assert rule["expiration"] == {"days": 365}
    assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}  # cut-off deliveries are not kept


def test_access_logs_need_no_elb_account_lookup(prod: StackRun) -> None:
    """aws.elb.get_service_account fails in regions opened after August 2022 and stopped the whole program."""
    assert not [token for token, _ in prod.invokes if token.startswith("aws:elb/")]


@pytest.mark.parametrize(("region", "elb_account"), [
    ("us-east-1", "arn:aws:iam::127311923021:root"),
    ("us-gov-west-1", "arn:aws-us-gov:iam::048591011584:root"),
    ("ap-south-2", None),  # Hyderabad, opened November 2022: the log-delivery service only
    ("ap-east-2", None),
])
def test_bucket_policy_uses_the_elb_account_only_where_the_region_has_one(region: str,
                                                                         elb_account: str | None) -> None:
    assert elb_account_arn(region) == elb_account
    statements = json.loads(bucket_policy("arn:aws:s3:::logs", elb_account, "123456789012"))["Statement"]
    writers = [st["Principal"] for st in statements if st["Effect"] == "Allow"]
    service = {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert writers == ([{"AWS": elb_account}, service] if elb_account else [service])


def test_access_logs_are_allowed_in_a_region_without_an_elb_account() -> None:
    logs = args_of("prod", **{"aws:region": "ap-east-2"}).load_balancer.access_logs
    assert logs is not None and logs.elb_account_arn is None
