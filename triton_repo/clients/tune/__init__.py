"""`triton-repo tune`: candidate served configurations loaded into the running server one at a time,
measured with the bench's method under a latency SLO, accuracy as a constraint."""
