"""SIP digest authentication (RFC 3261 §22, RFC 7616): parse and verify, challenge, nonces.

`digest` parses and checks credentials, `offer` builds the challenges we
send, `nonces` issues and checks our stateless nonces, `check` judges a
request's credentials against a subscriber's HA1 (the registrar for every
REGISTER, the edge for every call from a phone).  No I/O: the nonce-count store lives
in `shared.registrar.nonce_counts`.
"""
