"""The runtimes that run built artifacts, one module each with its loader and runner: onnxruntime_cpu and
openvino_cpu (in a worker process of the serving environment, so a crash refuses a variant instead of
killing the build: isolated.py is the parent side, worker.py the child) and tensorrt_gpu (in the engines
stage's child process)."""
