"""Ways to reach a far interpreter; each returns a frame transport (and its local process)."""
