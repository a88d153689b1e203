"""The runtimes that run built artifacts, one module each with its loader and runner. The CPU runtimes,
onnxruntime_cpu and openvino_cpu, are listed in registry.py and follow interface.py: the build runs them
in a worker process of the serving environment (so a crash refuses a variant instead of killing the
build: isolated.py is the parent side, worker.py the child), and the served model runs the same modules,
copied beside its model.py. tensorrt_gpu runs in the engines stage's child process."""
