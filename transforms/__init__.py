"""The transform: raw events → validated, deduped, priced curated tables (SQL in sql/, orchestration here)."""
