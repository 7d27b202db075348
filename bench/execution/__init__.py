"""Execution: plan -> execute -> rows (the only place rows are made), Dask, sweeps, presets, zoo cache."""
