"""HTTP plumbing shared by every service: the app factory, auth, probes, metrics."""

from shared.api.app import create_app

__all__ = ["create_app"]
