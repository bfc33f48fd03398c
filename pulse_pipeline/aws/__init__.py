"""What is specific to AWS: the connection rules (role ARN, external ID), Cost Explorer's requests
and pages, and the error sentences. The sync core calls it; nothing here imports Dagster."""
