"""Storage: the Parquet results table, its MLflow mirror, and the provenance every row carries."""
