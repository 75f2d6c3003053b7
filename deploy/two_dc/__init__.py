"""Two data centres: the broker definitions that federate each DC's events to the other
(``federation``), the Sentinel configuration beside them, and a loopback lab that runs both
DCs as real processes for the tests, the benchmark and the fault drill (``lab``).

The deployment itself is described in docs/high-availability.md ("Two data centres").
"""
