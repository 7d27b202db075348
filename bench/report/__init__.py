"""Reports: tables (Markdown, LaTeX, HTML, CSV) and figures, pure functions of the results table.

Nothing here reads the clock or the environment: the same table gives byte-identical files, and
whatever provenance a report should state (command, commit, date) comes in `header_lines`.

`rows` (which rows count, zoo labels) -> `leaderboard` (statistics per comparison) -> `sections`
(tables as text cells) -> `render` (Markdown / LaTeX / HTML); `comparison` (paper matrices);
`long_frames` -> `figures`; `files` writes them all into a results directory.
"""
