"""From a model file to a spec: read its inputs and outputs, probe it by running it, propose how to judge
its accuracy, and write model.yaml and a data stub (`triton-repo init`, `triton-repo inspect`)."""
