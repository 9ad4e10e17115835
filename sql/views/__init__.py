"""The views, one per file, in Athena SQL with the fragments and helpers of every model (rendered by sql.render)."""
