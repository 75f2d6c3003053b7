"""The fault drill: every part of the platform killed in turn under load.

``python -m deploy.drill`` (``make drill``) starts the whole platform with its
stores replicated (``platform.py``), runs calls, registrations and route
changes at a steady rate (``load.py``), kills and restores each part in turn
(``steps.py``), counts per step what failed, what was dropped mid-dialog, when
it worked again and what acknowledged was lost (``measure.py``), then kills a
whole data centre of the two-DC lab under the same load (``whole_dc.py``), in
the drill's order (``run.py``), and prints the table and writes it into
docs/high-availability.md (``report.py``).
"""
