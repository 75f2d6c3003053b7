"""The health service's HTTP resources: ``/v1/targets`` and ``/v1/dispatcher/sets``."""
