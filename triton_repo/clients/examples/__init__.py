"""Standalone example clients for the ensembles in model_repository/ (each file runs on its own)."""
