"""The registrar's data as the edges read it: bindings, AoR names, the Redis layout, reads.

Owned by the registrar (the only writer of bindings); the edges read the
same keys (`location`, `nonce_counts`) and apply the same `model`, so both
sides share one definition.
"""
