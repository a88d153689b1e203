"""Running built artifacts in a child process of the serving runtime, so a crash refuses a variant
instead of killing the build (isolated.py: the parent side; worker.py: the child)."""
