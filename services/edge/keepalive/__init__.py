"""Keepalives of the NAT'd and connection-oriented bindings an edge holds: schedule and pings."""
