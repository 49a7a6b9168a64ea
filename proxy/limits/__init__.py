"""Per-key limits: requests per minute, concurrent jobs, spend budgets."""
