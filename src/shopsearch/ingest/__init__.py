"""Ingest: validate loaded rows (bad rows to a rejects report) and store the good ones."""
