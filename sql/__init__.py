"""SQL models: the transform (staging → marts) and the views, rendered for DuckDB or Athena by sqlglot (models)."""
