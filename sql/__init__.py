"""SQL models (staging → marts) and views, written once for DuckDB and rendered for Athena."""
