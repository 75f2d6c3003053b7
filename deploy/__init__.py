"""Deployment helpers: the local multi-process runner behind ``make up``."""
