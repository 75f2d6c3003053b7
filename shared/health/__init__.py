"""The health service's Redis state as the edges read it: target states and overrides.

Owned by the health service (the writer); an edge's health feed reads the
same keys through `HealthStore`.
"""
