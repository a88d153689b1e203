"""Client threads that keep a server busy while a test changes its repository: half over gRPC, half
over HTTP, each sending the same sample to every model in turn, without pause, and counting every
failed request (the tests assert there are none)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Failure:
    protocol: str
    model: str
    at: float  # time.monotonic() when it was sent
    error: str


@dataclass
class ClientCounts:
    protocol: str
    sent: int = 0
    versions: dict[str, set[int]] = field(default_factory=dict)  # model -> versions that answered
    failures: list[Failure] = field(default_factory=list)


class Traffic:
    """`clients` threads (even: gRPC, odd: HTTP) on 127.0.0.1, cycling through `models`; a context
    manager: they start on entry and stop on exit."""

    def __init__(
        self,
        http_port: int,
        grpc_port: int,
        models: list[str],
        inputs: dict[str, np.ndarray],
        outputs: tuple[str, ...],
        clients: int = 4,
        pause: float = 0.02,
    ) -> None:
        self.ports = {"grpc": grpc_port, "http": http_port}
        self.models, self.inputs, self.outputs, self.pause = list(models), inputs, outputs, pause
        self.counts = [ClientCounts("grpc" if i % 2 == 0 else "http") for i in range(clients)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    @property
    def sent(self) -> dict[str, int]:
        totals = {"grpc": 0, "http": 0}
        for counts in self.counts:
            totals[counts.protocol] += counts.sent
        return totals

    @property
    def failures(self) -> list[Failure]:
        return sorted((f for counts in self.counts for f in counts.failures), key=lambda f: f.at)

    def versions(self) -> dict[str, set[int]]:
        seen: dict[str, set[int]] = {}
        for counts in self.counts:
            for model, versions in counts.versions.items():
                seen.setdefault(model, set()).update(versions)
        return seen

    def _run(self, index: int) -> None:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient

        counts = self.counts[index]
        # The one place the two protocols differ: the module, the timeout argument and the response.
        if counts.protocol == "grpc":
            module = grpcclient
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.ports['grpc']}")
            timeout = {"client_timeout": 30}
        else:
            module = httpclient
            client = httpclient.InferenceServerClient(f"127.0.0.1:{self.ports['http']}", network_timeout=30)
            timeout = {}
        requested = [module.InferRequestedOutput(name) for name in self.outputs]
        inputs = []
        for name, array in self.inputs.items():
            tensor = module.InferInput(
                name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32"
            )
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        turn = index
        try:
            while not self.stop.is_set():
                model = self.models[turn % len(self.models)]
                turn += 1
                sent = time.monotonic()
                counts.sent += 1
                try:
                    result = client.infer(model, inputs, outputs=requested, **timeout)
                    response = result.get_response()
                    version = response.model_version if module is grpcclient else response["model_version"]
                    counts.versions.setdefault(model, set()).add(int(version))
                except Exception as error:  # every failure is counted; the test asserts there are none
                    counts.failures.append(Failure(counts.protocol, model, sent, str(error)[:300]))
                time.sleep(self.pause)
        finally:
            client.close()
