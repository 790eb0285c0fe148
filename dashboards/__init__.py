"""dashboards (built in later issues)."""
