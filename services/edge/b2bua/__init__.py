"""The B2BUA's dialog-pair engine, sans-IO: bytes, their source and the time in,
messages to send out.

`B2bua` (in `engine`) is the entry point.  It answers the caller's dialog (leg A, the edge
the UAS) and originates a new one toward the target (leg B, the edge the UAC), each with
its own Call-ID, tags, CSeqs, Via and Contact.  The edge runs one per worker for the
calls of rules with `mode: b2bua` (`runtime.b2bua_runner`; docs/b2bua.md).
"""
