"""AWS regions and their partitions, from botocore's own endpoint data (no API call)."""

import functools

from botocore.loaders import create_loader
from botocore.regions import EndpointResolver


@functools.cache
def _endpoints() -> EndpointResolver:
    return EndpointResolver(create_loader().load_data("endpoints"))


def aws_partition(region: str) -> str:
    """The AWS partition of a region (aws, aws-cn, aws-us-gov, ...). Raises UnknownRegionError."""
    return str(_endpoints().get_partition_for_region(region))
