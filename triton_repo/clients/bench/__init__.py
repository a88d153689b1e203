"""The benchmark: load generator, measurement method, server breakdown, in-process floor, reports."""
