"""Repository stage: Triton model directories, generated through Triton's config schema, published atomically."""
