"""The documentation written from the code: ``python -m deploy.docs`` (docs/development.md).

Hand-kept lists of routes and fields go stale as the code moves; these pages are
rebuilt from the code instead, and tests fail when the committed page differs.
"""
