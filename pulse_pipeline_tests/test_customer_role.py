"""deploy/aws/customer-role.yaml: the CloudFormation template customers deploy for PULSE's role."""

import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "aws" / "customer-role.yaml"


def _template() -> Any:
    template, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return template


def test_cfn_lint_finds_nothing() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_role_can_only_read_costs_and_only_with_the_external_id() -> None:
    template = _template()
    assert set(template["Parameters"]) >= {"PulseAwsAccountId", "ExternalId"}
    assert template["Parameters"]["ExternalId"]["NoEcho"] is True
    role = template["Resources"]["PulseCostReadRole"]
    assert role["Type"] == "AWS::IAM::Role"
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    assert "${PulseAwsAccountId}" in trust["Principal"]["AWS"]["Fn::Sub"]
    statements = [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    assert [(s["Effect"], s["Action"]) for s in statements] == [("Allow", "ce:GetCostAndUsage")]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert template["Outputs"]["RoleArn"]["Value"] == {"Fn::GetAtt": ["PulseCostReadRole", "Arn"]}
