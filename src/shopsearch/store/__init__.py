"""Workspace store: Parquet tables read with DuckDB SQL, atomic writes, table parts, bundles."""
