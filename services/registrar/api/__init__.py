"""The registrar's HTTP resources: ``/subscribers`` and ``/registrations``."""
