"""Gateway health: OPTIONS probing of gateways and dispatcher destinations."""
