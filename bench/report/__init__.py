"""Reports: tables (Markdown, LaTeX, HTML) and figures, pure functions of the results table."""
