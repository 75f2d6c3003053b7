"""Fraud detection shared by every edge and the routing service: rules, counts, blocks."""
