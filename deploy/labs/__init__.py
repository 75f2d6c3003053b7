"""Failure labs on one machine: real Redis Sentinel groups, RabbitMQ clusters, free ports.

The tests, the benchmarks and the fault drill (``python -m deploy.drill``) start
the same labs, so what the drill reports is what the tests check.
"""
