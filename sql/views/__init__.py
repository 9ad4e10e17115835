"""The views, one per file, in Athena SQL with the helpers of sql.dialect (rendered by sql.render)."""
