"""infra/ades.yaml: cfn-lint, then the stack created for real in the local moto server (CloudFormation API) and its
wiring read back from the SNS, SQS, Lambda, IAM, ECS and EC2 APIs.

moto's CloudFormation has no AWS::SNS::Subscription (nor AWS::SQS::QueuePolicy): it skips them with a warning. So
these stacks set InlineSubscription=true, which declares the same subscription on the topic itself (a real
CloudFormation property moto does implement). The default resource form is checked statically against the same
queue; the queue policy is not checked here (moto does not enforce queue policies either).
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ades.cli import build_parser
from ades.config import Settings
from ades.events.consumer import process_event
from ades.events.poller import to_lambda_event
from ades.events.sinks import SnsSink
from ades.models import Job, StatusUpdate
from ades.serve import ServeRefused, check_bind
from ades.status import Status
from ades.store import JobStore
from lambdas.status_consumer.handler import settings_with_secrets
from tests.helpers import store_jobs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "ades.yaml"
REGION = "us-east-1"
ES_URL = "https://es.example.internal:9243"
ES_URL_WITH_CREDENTIALS = "https://ades:s3cret@es.example.internal:9243"
JWT_KEY = "a-shared-secret-of-32-bytes-or-more-for-hs256"


def cfn_lint() -> str:
    found = Path(sys.executable).parent / "cfn-lint"
    return str(found) if found.exists() else (shutil.which("cfn-lint") or pytest.fail("cfn-lint is not installed"))


@functools.cache
def aws(service: str, endpoint: str) -> Any:
    # cached: building a boto3 client loads the service model, which costs more than the calls these tests make
    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name=REGION,
                                          aws_access_key_id="ades-local", aws_secret_access_key="ades-local")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, …) read as {"Ref": …} style mappings."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


# --- lint ------------------------------------------------------------------------------------------------------


def test_cfn_lint_passes_on_the_template():
    run = subprocess.run([cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"cfn-lint:\n{run.stdout}\n{run.stderr}"


def test_cfn_lint_catches_a_broken_wiring(tmp_path: Path):
    # Proves the lint test can fail: the same template with the redrive target pointing nowhere.
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("!GetAtt StatusDeadLetterQueue.Arn", "!GetAtt NoSuchQueue.Arn"))
    run = subprocess.run([cfn_lint(), str(broken)], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "NoSuchQueue" in run.stdout


def test_the_server_cannot_be_created_without_auth():
    (rule,) = template()["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AdesImage"}, ""]}]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AuthJwtKeySecretArn"}, ""]}]}
    container = template()["Resources"]["AdesTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert "ADES_ALLOW_UNAUTHENTICATED_BIND" not in json.dumps(container)


def test_the_default_subscription_resource_wires_the_topic_to_the_queue():
    resources = template()["Resources"]
    sub = resources["StatusSubscription"]
    assert sub["Type"] == "AWS::SNS::Subscription" and sub["Condition"] == "UseSubscriptionResource"
    assert sub["Properties"] == {"TopicArn": {"Ref": "StatusTopic"}, "Protocol": "sqs",
                                 "Endpoint": {"Fn::GetAtt": ["StatusQueue", "Arn"]}, "RawMessageDelivery": True}
    policy = resources["StatusQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "StatusQueue"}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "StatusTopic"}}}


# --- the stack in moto ---------------------------------------------------------------------------------------


class Stack:
    def __init__(self, endpoint: str, name: str, secrets: dict[str, str]) -> None:
        self.endpoint = endpoint
        self.name = name
        self.secrets = secrets
        """parameter name -> ARN of the Secrets Manager secret it names"""
        cf = aws("cloudformation", endpoint)
        described = cf.describe_stacks(StackName=name)["Stacks"][0]
        self.status = described["StackStatus"]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        summaries = cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        # moto lists skipped and conditioned-out resources as blank rows
        self.physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries if r["LogicalResourceId"]}

    def client(self, service: str) -> Any:
        return aws(service, self.endpoint)

    def queue_arn(self, url: str) -> str:
        return self.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"]

    def role_statements(self, logical_id: str) -> list[dict[str, Any]]:
        iam = self.client("iam")
        role = self.physical[logical_id]
        statements = []
        for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
            if isinstance(document, str):
                # moto keeps a policy that came from a template as the str() of a dict, not as JSON
                document = json.loads(document) if document.startswith('{"') else ast.literal_eval(document)
            statements += document["Statement"]
        return statements


def _delete_ecs_leftovers(endpoint: str, stack_name: str) -> None:
    """moto's ECS resources have no CloudFormation delete: remove this stack's cluster, service and task family."""
    ecs = aws("ecs", endpoint)
    for cluster in ecs.list_clusters()["clusterArns"]:
        if f"/{stack_name}-" in cluster:
            for service in ecs.list_services(cluster=cluster)["serviceArns"]:
                ecs.delete_service(cluster=cluster, service=service, force=True)
            ecs.delete_cluster(cluster=cluster)
    for definition in ecs.list_task_definitions(familyPrefix=f"{stack_name}-")["taskDefinitionArns"]:
        ecs.deregister_task_definition(taskDefinition=definition)


@contextmanager
def created_stack(endpoint: str, zip_path: Path, extra: dict[str, str],
                  secrets: dict[str, str] | None = None) -> Iterator[Stack]:
    """A stack of unique name (and code bucket) in moto, deleted afterwards whatever happened. `secrets`: parameter
    name -> value of a Secrets Manager secret made for it (by default the cluster URL with its credentials)."""
    s3, cf, sm = aws("s3", endpoint), aws("cloudformation", endpoint), aws("secretsmanager", endpoint)
    unique = f"ades-deploy-test-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=unique)
    s3.upload_file(str(zip_path), unique, "ades/status-consumer.zip")
    secrets = {"ElasticsearchSecretArn": ES_URL_WITH_CREDENTIALS} if secrets is None else secrets
    arns = {name: sm.create_secret(Name=f"{unique}/{name}", SecretString=value)["ARN"]
            for name, value in secrets.items()}
    parameters = {"ElasticsearchUrl": ES_URL, "IndexPrefix": "deploy-",
                  "ConsumerCodeBucket": unique, "ConsumerCodeKey": "ades/status-consumer.zip",
                  "InlineSubscription": "true", "MaxReceiveCount": "3", "QueueVisibilityTimeout": "300",
                  "ConsumerBatchSize": "7", **arns, **extra}
    try:
        cf.create_stack(StackName=unique, TemplateBody=TEMPLATE.read_text(), Capabilities=["CAPABILITY_IAM"],
                        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
        yield Stack(endpoint, unique, arns)
    finally:
        for arn in arns.values():
            sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        cf.delete_stack(StackName=unique)
        _delete_ecs_leftovers(endpoint, unique)
        for item in s3.list_objects_v2(Bucket=unique).get("Contents", []):
            s3.delete_object(Bucket=unique, Key=item["Key"])
        s3.delete_bucket(Bucket=unique)


@pytest.fixture(scope="module")
def stack(moto_url: str, lambda_zip: Path) -> Iterator[Stack]:
    with created_stack(moto_url, lambda_zip, {}) as created:
        yield created


def test_the_stack_is_created_with_its_outputs(stack: Stack):
    assert stack.status == "CREATE_COMPLETE"
    assert set(stack.outputs) == {"StatusTopicArn", "StatusQueueUrl", "StatusDeadLetterQueueUrl",
                                  "ElasticsearchEndpoint", "StatusConsumerFunction"}
    assert stack.outputs["ElasticsearchEndpoint"] == ES_URL  # never the credentials
    assert stack.outputs["StatusTopicArn"].startswith("arn:aws:sns:")
    assert not {"AdesCluster", "AdesService", "AdesTaskRole"} & set(stack.physical)  # no AdesImage, no server


def test_the_subscription_points_at_the_queue(stack: Stack):
    subs = stack.client("sns").list_subscriptions_by_topic(TopicArn=stack.outputs["StatusTopicArn"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", stack.queue_arn(stack.outputs["StatusQueueUrl"]))]


def test_the_queue_redrives_to_the_dead_letter_queue(stack: Stack):
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=stack.outputs["StatusQueueUrl"],
                                                           AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.queue_arn(stack.outputs["StatusDeadLetterQueueUrl"])
    assert int(redrive["maxReceiveCount"]) == 3
    assert attributes["VisibilityTimeout"] == "300"


def test_the_event_source_mapping_feeds_the_queue_to_the_function_with_batch_item_failures(stack: Stack,
                                                                                           lambda_zip: Path):
    lam = stack.client("lambda")
    function = stack.outputs["StatusConsumerFunction"]
    (mapping,) = lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    assert mapping["EventSourceArn"] == stack.queue_arn(stack.outputs["StatusQueueUrl"])
    assert mapping["FunctionArn"].endswith(f":function:{function}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 7
    assert mapping["State"] == "Enabled"

    config = lam.get_function(FunctionName=function)["Configuration"]
    assert config["Handler"] == "status_consumer.handler.handler"
    assert config["Runtime"] == "python3.11"
    assert config["Role"].endswith(f":role/{stack.physical['ConsumerRole']}")
    # the cluster's credentials stay in Secrets Manager: the function is told where, not what
    assert config["Environment"]["Variables"] == {
        "ADES_ES_URL_SECRET_ARN": stack.secrets["ElasticsearchSecretArn"], "ADES_INDEX_PREFIX": "deploy-"}
    assert "s3cret" not in json.dumps(lam.get_function(FunctionName=function), default=str)
    assert set(config["Environment"]["Variables"]) <= {f"ADES_{n.upper()}" for n in Settings.model_fields}
    # The function's code is the zip lambdas/build.py made (uploaded to the stack's bucket).
    assert config["CodeSha256"] == base64.b64encode(hashlib.sha256(lambda_zip.read_bytes()).digest()).decode()


def test_the_consumer_reads_the_cluster_url_from_its_secret(stack: Stack):
    variables = {"es_url_secret_arn": stack.secrets["ElasticsearchSecretArn"], "aws_endpoint_url": stack.endpoint}
    settings = settings_with_secrets(Settings(_env_file=None, **variables))
    assert settings.elasticsearch_url == ES_URL_WITH_CREDENTIALS


def test_the_consumer_role_may_only_read_its_queue_its_secret_and_write_its_logs(stack: Stack):
    statements = stack.role_statements("ConsumerRole")
    grants = {(action, s["Resource"]) for s in statements
              for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    queue_arn = stack.queue_arn(stack.outputs["StatusQueueUrl"])
    secret_arn = stack.secrets["ElasticsearchSecretArn"]
    log_group = stack.physical["ConsumerLogGroup"]
    assert {a for a, r in grants if r == queue_arn} == {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                         "sqs:GetQueueAttributes"}
    assert {a for a, r in grants if r == secret_arn} == {"secretsmanager:GetSecretValue"}
    assert {a for a, r in grants if r not in (queue_arn, secret_arn)} == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert all(log_group in r for a, r in grants if a.startswith("logs:"))
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in statements)


def test_a_status_published_to_the_topic_reaches_the_queue_and_the_consumer_applies_it(stack: Stack,
                                                                                       job_store: JobStore,
                                                                                       settings: Settings):
    # moto would "invoke" the Lambda for each message through Docker, which is not here: switch the mapping off
    # (its wiring is checked above) and do its part by hand with the same handler code.
    lam = stack.client("lambda")
    (mapping,) = lam.list_event_source_mappings(FunctionName=stack.outputs["StatusConsumerFunction"])[
        "EventSourceMappings"]
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    try:
        job = Job(process_id="echo")
        store_jobs(job_store, [job])
        publisher = settings.model_copy(update={"aws_endpoint_url": stack.endpoint, "aws_region": REGION,
                                                "sns_topic_arn": stack.outputs["StatusTopicArn"]})
        SnsSink(publisher).publish(StatusUpdate(job_id=job.id, status=Status.RUNNING, progress=55,
                                                message="via stack"))
        sqs = stack.client("sqs")
        messages = sqs.receive_message(QueueUrl=stack.outputs["StatusQueueUrl"], MaxNumberOfMessages=10,
                                       WaitTimeSeconds=5)["Messages"]
    finally:
        # the module's stack is shared: leave the mapping as the template made it
        lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    assert len(messages) == 1
    result = process_event(to_lambda_event(messages), job_store)
    assert result == {"batchItemFailures": []}
    sqs.delete_message(QueueUrl=stack.outputs["StatusQueueUrl"], ReceiptHandle=messages[0]["ReceiptHandle"])
    doc = job_store.get(job.id)
    assert (doc["status"], doc["progress"], doc["message"]) == ("running", 55, "via stack")


# --- the ades server on ECS ----------------------------------------------------------------------------------


@pytest.fixture
def network(moto_url: str) -> Iterator[tuple[str, str]]:
    ec2 = aws("ec2", moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    try:
        yield vpc, subnet
    finally:
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def _container(ecs: Any, cluster: str, service_name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The service, its task definition and its one container."""
    (service,) = ecs.describe_services(cluster=cluster, services=[service_name])["services"]
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    return service, definition, container


def _settings_of(container: dict[str, Any]) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    assert set(env) <= {f"ADES_{n.upper()}" for n in Settings.model_fields}
    return {name.removeprefix("ADES_").lower(): value for name, value in env.items()}


def test_with_an_image_ades_runs_on_fargate_with_no_shared_disk(moto_url: str, lambda_zip: Path,
                                                               network: tuple[str, str]):
    """API tasks behind a load balancer, a Dask scheduler and worker tasks: each a service of its own, sharing only
    Elasticsearch, the output bucket and the status topic (no volume anywhere)."""
    vpc, subnet = network
    image = "ades:0.1.0"
    extra = {"AdesImage": image, "VpcId": vpc, "SubnetIds": subnet, "AllowedCidr": "10.42.0.0/16",
             "AdesPublicUrl": "https://ades.example.internal", "AuthJwtAudience": "ades", "AdesTaskCount": "3",
             "WorkerTaskCount": "4"}
    secrets = {"ElasticsearchSecretArn": ES_URL_WITH_CREDENTIALS, "AuthJwtKeySecretArn": JWT_KEY}
    with created_stack(moto_url, lambda_zip, extra, secrets) as stack:
        assert stack.status == "CREATE_COMPLETE"
        topic, bucket = stack.outputs["StatusTopicArn"], stack.outputs["OutputBucket"]
        stack.client("s3").head_bucket(Bucket=bucket)
        ecs, cluster = stack.client("ecs"), stack.outputs["AdesCluster"]
        api, api_definition, server = _container(ecs, cluster, stack.outputs["AdesService"])
        workers, worker_definition, worker = _container(ecs, cluster, stack.outputs["WorkerService"])
        scheduler_service, scheduler_definition, scheduler = _container(ecs, cluster,
                                                                        stack.outputs["DaskSchedulerService"])
        assert (api["desiredCount"], workers["desiredCount"], scheduler_service["desiredCount"]) == (3, 4, 1)
        for definition in (api_definition, worker_definition, scheduler_definition):
            assert not definition.get("volumes"), "a task shares a volume"
            assert definition["containerDefinitions"][0]["image"] == image

        for container in (server, worker, scheduler):
            build_parser().parse_args(container["command"])  # a real `ades` command line (exits 2 if not)
        assert server["command"][0] == "serve"
        assert server["command"][-2:] == ["--public-url", "https://ades.example.internal"]
        assert worker["command"][:2] == ["dask", "worker"] and scheduler["command"][:2] == ["dask", "scheduler"]
        address = f"tcp://dask-scheduler:{scheduler['command'][scheduler['command'].index('--port') + 1]}"
        assert worker["command"][worker["command"].index("--scheduler") + 1] == address

        # the API and the workers: the same store, topic, bucket and scheduler; secrets named, never inlined
        for container in (server, worker):
            values = _settings_of(container)
            assert values["sns_topic_arn"] == topic and values["event_sink"] == "sns"
            assert (values["executor"], values["dask_scheduler"]) == ("dask", address)
            assert (values["output_storage"], values["output_bucket"]) == ("s3", bucket)
            assert values["log_store"] == "elasticsearch" and values["auth_jwt_audience"] == "ades"
            injected = {e["name"]: e["valueFrom"] for e in container["secrets"]}
            assert injected == {"ADES_ES_URL": stack.secrets["ElasticsearchSecretArn"],
                                "ADES_AUTH_JWT_KEY": stack.secrets["AuthJwtKeySecretArn"]}
            assert not {"es_url", "auth_jwt_key"} & set(values)
            Settings(_env_file=None, **values, auth_jwt_key=JWT_KEY)  # values the processes accept at start
        for definition in (api_definition, worker_definition):
            text = json.dumps(definition, default=str)
            assert "s3cret" not in text and JWT_KEY not in text
        assert not scheduler.get("secrets") and not scheduler.get("environment")

        # the server listens on every interface: allowed with auth on, refused without
        args = build_parser().parse_args(server["command"])
        check_bind(Settings(_env_file=None, **_settings_of(server), auth_jwt_key=JWT_KEY), args.host)
        with pytest.raises(ServeRefused):
            check_bind(Settings(_env_file=None, **_settings_of(server)), args.host)
        statements = stack.role_statements("AdesExecutionRole")
        readable = {r for s in statements if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])
                    for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
        assert readable == set(stack.secrets.values())

        # moto keeps no task role on the task definition, so the role is read from IAM by its logical id: the
        # processes may publish to their topic and use their bucket, nothing else
        granted = {(a, s["Resource"]) for s in stack.role_statements("AdesTaskRole")
                   for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        bucket_arn = f"arn:aws:s3:::{bucket}"
        assert granted == {("sns:Publish", topic), ("s3:ListBucket", bucket_arn),
                           *((action, f"{bucket_arn}/*") for action in ("s3:GetObject", "s3:PutObject",
                                                                        "s3:DeleteObject"))}

        # the network: clients reach the load balancer only; the tasks take 5000 from it and Dask from each other
        ec2 = stack.client("ec2")
        (balancer_group,) = ec2.describe_security_groups(GroupIds=[stack.physical["LoadBalancerSecurityGroup"]])[
            "SecurityGroups"]
        assert [(p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]])
                for p in balancer_group["IpPermissions"]] == [(80, 80, ["10.42.0.0/16"])]
        (tasks_group,) = ec2.describe_security_groups(GroupIds=[stack.physical["AdesSecurityGroup"]])[
            "SecurityGroups"]
        assert tasks_group["VpcId"] == vpc
        opened = {(p["FromPort"], p["ToPort"], pair["GroupId"], bool(p["IpRanges"]))
                  for p in tasks_group["IpPermissions"] for pair in p["UserIdGroupPairs"]}
        assert opened == {(5000, 5000, balancer_group["GroupId"], False),
                          (1024, 65535, tasks_group["GroupId"], False)}
        assert all(not p["IpRanges"] for p in tasks_group["IpPermissions"])
        elb = stack.client("elbv2")
        (target_group,) = elb.describe_target_groups(TargetGroupArns=[stack.physical["AdesTargetGroup"]])[
            "TargetGroups"]
        assert (target_group["Port"], target_group["TargetType"], target_group["HealthCheckPath"]) == \
            (5000, "ip", "/conformance")
