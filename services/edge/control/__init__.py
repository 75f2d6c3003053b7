"""Call control from the API for proxied calls: a BYE to each party built from the records."""
