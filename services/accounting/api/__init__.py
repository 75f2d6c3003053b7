"""The accounting service's HTTP API: one router per resource."""
