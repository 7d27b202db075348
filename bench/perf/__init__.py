"""`bench perf`: timing utilities, suites (batched vs looped, methods vs width) and reference peers."""
