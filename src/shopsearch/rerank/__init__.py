"""Re-ranking after the ranking model: diversity (PODM-MI and its baselines) and traffic
allocation (MODRL-TA and its baselines)."""
