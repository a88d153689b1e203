"""Pipeline stages: each is a function from files to files (export, verify, repository)."""
