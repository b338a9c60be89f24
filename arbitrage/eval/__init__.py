"""Datasets, grading, batch runs, metrics, sweeps and reports."""
