"""Registrar: REGISTER with digest auth, location bindings in Redis."""
