"""Clients of the served repository: correctness checks (infer); later the benchmark."""
