"""Two edges sharing a virtual IP with keepalived (VRRP): the configuration a box runs
(``keepalived``, the template and ``check-edge`` beside it) and a lab of network namespaces
that builds such a pair on one machine for the tests and the benchmark (``lab``).

The deployment itself is described in docs/high-availability.md.
"""
