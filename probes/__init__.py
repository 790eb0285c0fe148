"""probes (built in later issues)."""
