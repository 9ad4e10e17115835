"""The Glue transform (``transform.engine: glue``): the job, its encryption, role, schedule and failure alarm, on a
synth with cdk-nag's checks. The job's entry point (``transforms/glue_job.py``) runs on Spark in
``tests/transform/test_spark_engine.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from common import constants as c
from infra.config import parse_config
from infra.constructs.glue_transform import ADDITIONAL_MODULES, GlueTransform, pinned
from infra.nag import new_app
from tests.infra.conftest import sample_data


@pytest.fixture(scope="module")
def glue_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # cdk-nag's AwsSolutions checks run on this synth: an unacknowledged finding fails it
    outdir = tmp_path_factory.mktemp("glue.out")
    app = new_app(outdir=str(outdir), cloudformation_validation=False)
    stack = Stack(app, "glue")
    key = kms.Key(stack, "K", enable_key_rotation=True)
    bucket = s3.Bucket(stack, "Lake", encryption=s3.BucketEncryption.KMS, encryption_key=key, enforce_ssl=True,
                       server_access_logs_prefix="access/")
    GlueTransform(stack, "Glue", unit_name="bare", schedule="cron(15 * * * ? *)", bucket=bucket, key=key,
                  worker_type="G.2X", workers=3, timeout_minutes=60)
    app.synth()
    return json.loads((outdir / "glue.template.json").read_text())


def _resources(template: dict[str, Any], cfn_type: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == cfn_type]


def test_the_job_is_glue_5_spark_with_the_engine_and_its_packages(glue_template):
    Template.from_json(glue_template).has_resource_properties("AWS::Glue::Job", {
        "GlueVersion": "5.0", "WorkerType": "G.2X", "NumberOfWorkers": 3, "Timeout": 60, "MaxRetries": 1,
        "ExecutionProperty": {"MaxConcurrentRuns": 1}, "Name": "modelmeter-bare-transform",
        "Command": {"Name": "glueetl", "PythonVersion": "3", "ScriptLocation": Match.any_value()},
        "SecurityConfiguration": Match.any_value(),
        "DefaultArguments": Match.object_like({
            "--job-bookmark-option": "job-bookmark-disable", "--enable-continuous-cloudwatch-log": "true",
            "--stage-locally": "false", "--extra-py-files": Match.any_value(),
            "--additional-python-modules": pinned(ADDITIONAL_MODULES)})})
    [job] = _resources(glue_template, "AWS::Glue::Job")
    assert job["Command"]["ScriptLocation"]["Fn::Sub"].endswith(".py")
    assert job["DefaultArguments"]["--extra-py-files"]["Fn::Sub"].endswith(".zip")
    assert "duckdb==" in job["DefaultArguments"]["--additional-python-modules"]


def test_everything_the_job_writes_is_encrypted_with_the_lake_key(glue_template):
    [security] = _resources(glue_template, "AWS::Glue::SecurityConfiguration")
    config = security["EncryptionConfiguration"]
    assert config["S3Encryptions"][0]["S3EncryptionMode"] == "SSE-KMS"
    assert config["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert config["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"


def test_the_role_writes_only_the_prefixes_the_transform_replaces(glue_template):
    statements = [s for p in _resources(glue_template, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]]
    writes = [json.dumps(s["Resource"]) for s in statements if "s3:PutObject" in json.dumps(s["Action"])]
    prefixes = (c.CURATED_USAGE_COST, c.CURATED_TEAM_MODEL_DAILY, c.QUARANTINE_EVENTS, c.RUN_MANIFESTS)
    assert len(writes) == len(prefixes) and all(any(f"/{p}/*" in w for w in writes) for p in prefixes)
    assert not [w for w in writes if c.RAW_EVENTS in w]  # raw events are never rewritten
    unscoped = [s for s in statements if s.get("Resource") == "*"]
    assert [s["Action"] for s in unscoped] == ["cloudwatch:PutMetricData"]  # no ARN exists; namespace-conditioned
    [assets] = [s for s in statements if s["Action"] == "s3:GetObject"]
    assert len(assets["Resource"]) == 2  # the script and the packages, not the whole bootstrap bucket


def test_the_job_runs_on_the_schedule_and_a_failed_run_alarms(glue_template):
    [schedule] = _resources(glue_template, "AWS::Scheduler::Schedule")
    assert schedule["ScheduleExpression"] == "cron(15 * * * ? *)"
    assert schedule["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:glue:startJobRun"
    assert json.loads(schedule["Target"]["Input"]) == {"JobName": "modelmeter-bare-transform"}
    [rule] = _resources(glue_template, "AWS::Events::Rule")
    assert rule["EventPattern"] == {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
                                    "detail": {"jobName": ["modelmeter-bare-transform"],
                                               "state": ["FAILED", "TIMEOUT", "ERROR"]}}
    [alarm] = _resources(glue_template, "AWS::CloudWatch::Alarm")
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1


def test_the_config_accepts_glue_and_no_longer_athena():
    data = sample_data()
    unit = data["units"][0]
    unit["transform"] = {**unit.get("transform", {}), "engine": "glue", "glue": {"workers": 10}}
    config = parse_config(data, source="test")
    assert config.units[0].transform.engine == "glue" and config.units[0].transform.glue.workers == 10
    unit["transform"]["engine"] = "athena"
    with pytest.raises(Exception, match="duckdb.*glue|glue.*duckdb"):
        parse_config(data, source="test")
