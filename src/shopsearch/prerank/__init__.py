"""Pre-ranking: a light model that picks, from a large retrieved pool, the candidates the
ranking model re-scores (HCCP and its baselines)."""
