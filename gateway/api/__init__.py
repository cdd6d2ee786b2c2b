"""HTTP routes, one module per client dialect."""
