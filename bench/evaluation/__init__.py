"""Evaluation: curves along interpolation paths, metric definitions, cycle consistency, REPAIR."""
