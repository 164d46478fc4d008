"""Ranking: training samples and features, multi-task ranking models, position bias."""
