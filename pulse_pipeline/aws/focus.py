"""AWS Cost Explorer values in FOCUS 1.2 terms: service categories, charge frequency, publisher.

`focus_costs` (pulse_pipeline/db/views.py) turns these tables into SQL, so the view, the README
and the conformance test share one mapping. FOCUS 1.2's allowed values are the specification's
own (`specification/columns/servicecategory.md`, `servicesubcategory.md`, `chargefrequency.md`
at tag v1.2); the conformance test checks every value here against them.

The service map is keyed by Cost Explorer's SERVICE dimension value exactly as Cost Explorer
spells it (e.g. "AmazonCloudWatch", "EC2 - Other"). A service missing from it is "Other" /
"Other (Other)", which FOCUS reserves for services that fit no category: add it here (and say
so in the README) when a customer's bill shows one.
"""

from typing import Final

# The provider and, for every charge Cost Explorer reports without BILLING_ENTITY, the publisher
# and invoice issuer: the same entity (FOCUS's "Origination of cost data", scenario 1.1).
AWS: Final = "AWS"

OTHER: Final = ("Other", "Other (Other)")

# Cost Explorer SERVICE -> (FOCUS ServiceCategory, FOCUS ServiceSubcategory).
SERVICE_CATEGORIES: Final[dict[str, tuple[str, str]]] = {
    # Compute
    "Amazon Elastic Compute Cloud - Compute": ("Compute", "Virtual Machines"),
    "Amazon Lightsail": ("Compute", "Virtual Machines"),
    # EBS volumes and snapshots, NAT gateways, Elastic IPs and EC2 data transfer in one line.
    "EC2 - Other": ("Compute", "Other (Compute)"),
    "AWS Lambda": ("Compute", "Serverless Compute"),
    "Amazon Elastic Container Service": ("Compute", "Containers"),
    "Amazon Elastic Container Service for Kubernetes": ("Compute", "Containers"),
    "Amazon EC2 Container Registry (ECR)": ("Compute", "Containers"),
    "AWS Fargate": ("Compute", "Containers"),
    "AWS Batch": ("Compute", "Other (Compute)"),
    "Amazon WorkSpaces": ("Compute", "End User Computing"),
    "Amazon AppStream": ("Compute", "End User Computing"),
    "Amazon Braket": ("Compute", "Quantum Compute"),
    "Savings Plans for AWS Compute usage": ("Compute", "Other (Compute)"),
    # Storage
    "Amazon Simple Storage Service": ("Storage", "Object Storage"),
    "Amazon Glacier": ("Storage", "Object Storage"),
    "Amazon Elastic Block Store": ("Storage", "Block Storage"),
    "Amazon Elastic File System": ("Storage", "File Storage"),
    "Amazon FSx": ("Storage", "File Storage"),
    "AWS Backup": ("Storage", "Backup Storage"),
    "AWS Storage Gateway": ("Storage", "Other (Storage)"),
    # Databases
    "Amazon Relational Database Service": ("Databases", "Relational Databases"),
    "Amazon DynamoDB": ("Databases", "NoSQL Databases"),
    "Amazon DocumentDB (with MongoDB compatibility)": ("Databases", "NoSQL Databases"),
    "Amazon Keyspaces (for Apache Cassandra)": ("Databases", "NoSQL Databases"),
    "Amazon Neptune": ("Databases", "NoSQL Databases"),
    "Amazon ElastiCache": ("Databases", "Caching"),
    "Amazon MemoryDB": ("Databases", "Caching"),
    "Amazon Redshift": ("Databases", "Data Warehouses"),
    "Amazon Timestream": ("Databases", "Time Series Databases"),
    "Amazon Quantum Ledger Database": ("Databases", "Ledger Databases"),
    # Networking
    "Amazon Virtual Private Cloud": ("Networking", "Network Infrastructure"),
    "Amazon CloudFront": ("Networking", "Content Delivery"),
    "Amazon Route 53": ("Networking", "Network Infrastructure"),
    "Elastic Load Balancing": ("Networking", "Application Networking"),
    "AWS Direct Connect": ("Networking", "Network Connectivity"),
    "AWS Data Transfer": ("Networking", "Network Connectivity"),
    "AWS Global Accelerator": ("Networking", "Network Routing"),
    "AWS Network Firewall": ("Networking", "Network Security"),
    "AWS WAF": ("Networking", "Network Security"),
    "AWS Shield": ("Networking", "Network Security"),
    # Integration
    "Amazon API Gateway": ("Integration", "API Management"),
    "AWS AppSync": ("Integration", "API Management"),
    "Amazon Simple Queue Service": ("Integration", "Messaging"),
    "Amazon Simple Notification Service": ("Integration", "Messaging"),
    "Amazon Simple Email Service": ("Integration", "Messaging"),
    "Amazon MQ": ("Integration", "Messaging"),
    "Amazon EventBridge": ("Integration", "Messaging"),
    "AWS Step Functions": ("Integration", "Workflow Orchestration"),
    "Amazon Managed Workflows for Apache Airflow": ("Integration", "Workflow Orchestration"),
    "Amazon AppFlow": ("Integration", "Other (Integration)"),
    # Analytics
    "Amazon Athena": ("Analytics", "Data Processing"),
    "AWS Glue": ("Analytics", "Data Processing"),
    "Amazon Elastic MapReduce": ("Analytics", "Data Processing"),
    "Amazon Kinesis": ("Analytics", "Streaming Analytics"),
    "Amazon Kinesis Firehose": ("Analytics", "Streaming Analytics"),
    "Amazon Managed Streaming for Apache Kafka": ("Analytics", "Streaming Analytics"),
    "Amazon OpenSearch Service": ("Analytics", "Search"),
    "Amazon Elasticsearch Service": ("Analytics", "Search"),
    "Amazon QuickSight": ("Analytics", "Business Intelligence"),
    # AI and Machine Learning
    "Amazon SageMaker": ("AI and Machine Learning", "Machine Learning"),
    "Amazon Bedrock": ("AI and Machine Learning", "Generative AI"),
    "Amazon Q": ("AI and Machine Learning", "Generative AI"),
    "Amazon Lex": ("AI and Machine Learning", "Bots"),
    "Amazon Comprehend": ("AI and Machine Learning", "Natural Language Processing"),
    "Amazon Translate": ("AI and Machine Learning", "Natural Language Processing"),
    "Amazon Transcribe": ("AI and Machine Learning", "Natural Language Processing"),
    "Amazon Polly": ("AI and Machine Learning", "Natural Language Processing"),
    "Amazon Rekognition": ("AI and Machine Learning", "Other (AI and Machine Learning)"),
    "Amazon Textract": ("AI and Machine Learning", "Other (AI and Machine Learning)"),
    # Management and Governance
    "AmazonCloudWatch": ("Management and Governance", "Observability"),
    "AWS X-Ray": ("Management and Governance", "Observability"),
    "Amazon Managed Grafana": ("Management and Governance", "Observability"),
    "Amazon Managed Service for Prometheus": ("Management and Governance", "Observability"),
    "AWS CloudTrail": ("Management and Governance", "Compliance"),
    "AWS Config": ("Management and Governance", "Compliance"),
    "AWS Cost Explorer": ("Management and Governance", "Cost Management"),
    "AWS Budgets": ("Management and Governance", "Cost Management"),
    "AWS Lake Formation": ("Management and Governance", "Data Governance"),
    "AWS Systems Manager": ("Management and Governance", "Other (Management and Governance)"),
    "AWS CloudFormation": ("Management and Governance", "Other (Management and Governance)"),
    "AWS Support (Basic)": ("Management and Governance", "Support"),
    "AWS Support (Developer)": ("Management and Governance", "Support"),
    "AWS Support (Business)": ("Management and Governance", "Support"),
    "AWS Support (Enterprise On-Ramp)": ("Management and Governance", "Support"),
    "AWS Support (Enterprise)": ("Management and Governance", "Support"),
    # Security and Identity
    "AWS Key Management Service": ("Security", "Secret Management"),
    "AWS Secrets Manager": ("Security", "Secret Management"),
    "AWS Certificate Manager": ("Security", "Secret Management"),
    "AWS CloudHSM": ("Security", "Secret Management"),
    "Amazon GuardDuty": ("Security", "Threat Detection and Response"),
    "Amazon Detective": ("Security", "Threat Detection and Response"),
    "AWS Security Hub": ("Security", "Security Posture Management"),
    "Amazon Inspector": ("Security", "Security Posture Management"),
    "Amazon Macie": ("Security", "Other (Security)"),
    "Amazon Cognito": ("Identity", "Identity and Access Management"),
    "AWS Directory Service": ("Identity", "Identity and Access Management"),
    # Developer Tools
    "AWS CodeBuild": ("Developer Tools", "Continuous Integration and Deployment"),
    "AWS CodePipeline": ("Developer Tools", "Continuous Integration and Deployment"),
    "AWS CodeDeploy": ("Developer Tools", "Continuous Integration and Deployment"),
    "AWS CodeCommit": ("Developer Tools", "Source Code Management"),
    "AWS CodeArtifact": ("Developer Tools", "Other (Developer Tools)"),
    "AWS Cloud9": ("Developer Tools", "Development Environments"),
    "AWS Device Farm": ("Developer Tools", "Quality Assurance"),
    # Web, mobile, media, IoT, business applications, migration, hybrid
    "AWS Elastic Beanstalk": ("Web", "Application Platforms"),
    "AWS App Runner": ("Web", "Application Platforms"),
    "AWS Amplify": ("Web", "Application Platforms"),
    "Amazon Registrar": ("Web", "Other (Web)"),
    "Amazon Pinpoint": ("Mobile", "Other (Mobile)"),
    "Amazon GameLift": ("Media", "Gaming"),
    "Amazon Interactive Video Service": ("Media", "Media Streaming"),
    "AWS Elemental MediaLive": ("Media", "Media Streaming"),
    "AWS Elemental MediaConvert": ("Media", "Other (Media)"),
    "AWS IoT": ("Internet of Things", "IoT Platforms"),
    "AWS IoT Analytics": ("Internet of Things", "IoT Analytics"),
    "Amazon Connect": ("Business Applications", "Other (Business Applications)"),
    "Amazon WorkMail": ("Business Applications", "Productivity and Collaboration"),
    "Amazon WorkDocs": ("Business Applications", "Productivity and Collaboration"),
    "Amazon Chime": ("Business Applications", "Productivity and Collaboration"),
    "AWS Database Migration Service": ("Migration", "Data Migration"),
    "AWS DataSync": ("Migration", "Data Migration"),
    "AWS Snowball": ("Migration", "Data Migration"),
    "AWS Application Migration Service": ("Migration", "Resource Migration"),
    "AWS Outposts": ("Multicloud", "Other (Multicloud)"),
}

# Cost Explorer RECORD_TYPE -> FOCUS ChargeFrequency. Usage is recorded per day of use;
# reservation, Savings Plan and support fees recur monthly whether used or not; an upfront
# fee, a tax line, a credit, a refund or an out-of-cycle charge happens once.
CHARGE_FREQUENCIES: Final[dict[str, str]] = {
    "Usage": "Usage-Based",
    "DiscountedUsage": "Usage-Based",
    "Reservation applied usage": "Usage-Based",
    "Savings Plan Covered Usage": "Usage-Based",
    "Savings Plan Negation": "Usage-Based",
    "Recurring reservation fee": "Recurring",
    "Savings Plan Recurring Fee": "Recurring",
    "Support fee": "Recurring",
    "Upfront reservation fee": "One-Time",
    "Savings Plan Upfront Fee": "One-Time",
    "Tax": "One-Time",
    "Credit": "One-Time",
    "Enterprise Discount Program Discount": "One-Time",
    "Refund": "One-Time",
    "Other out-of-cycle charges": "One-Time",
}
# A record type AWS adds later is a charge of category Adjustment (aws/pages.py): One-Time.
DEFAULT_CHARGE_FREQUENCY: Final = "One-Time"


def service_category(service: str) -> tuple[str, str]:
    """The FOCUS (ServiceCategory, ServiceSubcategory) of a Cost Explorer SERVICE value."""
    return SERVICE_CATEGORIES.get(service, OTHER)


def charge_frequency(record_type: str | None) -> str:
    """The FOCUS ChargeFrequency of a Cost Explorer RECORD_TYPE (One-Time when unknown)."""
    if record_type is None:
        return DEFAULT_CHARGE_FREQUENCY
    return CHARGE_FREQUENCIES.get(record_type, DEFAULT_CHARGE_FREQUENCY)


def charge_description(service: str, record_type: str | None) -> str:
    """FOCUS ChargeDescription of a Cost Explorer group: the service and the AWS record type.

    Cost Explorer's daily SERVICE x RECORD_TYPE total has no line-item description; this says
    exactly what the row sums, e.g. "Amazon Simple Storage Service (Credit), daily total".
    """
    kind = f" ({record_type})" if record_type else ""
    return f"{service}{kind}, daily total"
