"""Datasets: the seeded word-problem generator and the evaluation sets shipped with the package."""
