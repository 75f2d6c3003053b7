"""Limits every edge and worker share: the values (:mod:`shared.limits.model`, what the
edge's sans-IO core speaks) and the Redis scripts (:mod:`shared.limits.store`)."""
