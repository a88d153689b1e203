"""The load generator: asyncio clients for gRPC and HTTP, closed loop (concurrency) or open loop (rate).

Requests are built once and re-sent (a traffic sample: each of its requests in turn); each completion is recorded with its send time, answer time and
status. Protocol quirks live in `Connection`: gRPC statuses are names (UNAVAILABLE), HTTP statuses are
codes (HTTP 503); client-side timeouts and connection failures are counted as `client ...`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import numpy as np

from triton_repo.clients.bench.method import Completion
from triton_repo.clients.triton_client import WIRE_TYPES, status_code

OPEN_LOOP_MAX_IN_FLIGHT = 1024


@dataclass(frozen=True)
class Request:
    """What to send: one model, one request's inputs (batch included), the outputs to ask for; with a
    traffic sample, every request's inputs (`traffic`, sent in turn; `inputs` is the first)."""

    protocol: str
    url: str
    model: str
    inputs: dict[str, np.ndarray]
    outputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, numpy dtype) of one response
    timeout_s: float = 60.0
    shared_memory: bool = False
    sequences: Sequences | None = None  # a stateful model: each closed-loop worker drives live sequences
    traffic: tuple[dict[str, np.ndarray], ...] = ()  # a traffic sample's requests, cycled through
    steps: tuple[str, ...] = ()  # an ensemble's composing models: their statistics are sampled too
    metrics_url: str | None = None  # Triton's Prometheus metrics (custom stage timings), if reachable

    @property
    def every_inputs(self) -> tuple[dict[str, np.ndarray], ...]:
        """The inputs of every distinct request, in the order they are sent."""
        return self.traffic or (self.inputs,)


@dataclass(frozen=True)
class Sequences:
    """What a stateful model is sent: per golden stream, its chunks as the wire carries them; each worker
    streams one of them as a sequence of `length` chunks (cycling through the stream), then starts the
    next sequence under a new ID."""

    chunks: list[list[dict[str, np.ndarray]]]  # [stream][step] -> inputs
    length: int


def status_of(error: BaseException, protocol: str) -> str:
    """A short, countable status for a failed request."""
    if isinstance(error, asyncio.TimeoutError):
        return "client timeout"
    code = status_code(error)
    if not code:
        return f"client {type(error).__name__}"
    if protocol == "http":
        return f"HTTP {code}"
    return "client timeout" if code == "DEADLINE_EXCEEDED" else code


class Connection:
    """One asyncio client with its requests prepared once, and optional system shared memory.

    gRPC requests are serialized once (the ModelInferRequest protobuf) and re-sent as bytes on a raw
    channel method, so the load generator spends its CPU on sending, not on rebuilding requests; the
    response bytes are not decoded. HTTP goes through tritonclient's asyncio client.
    """

    def __init__(self, target: Request, slots: int, in_flight: int | None = None) -> None:
        """`slots`: prepared requests (one per worker with shared memory); `in_flight`: the most requests
        at once (HTTP opens one connection per request in flight), default `slots`."""
        self.target = target
        self.slots = max(slots, 1)
        self._regions: list[tuple[str, object]] = []
        self._requests: list[list] = []  # per slot, its prepared requests (gRPC bytes; HTTP inputs, outputs)
        self._turn: dict[int, int] = {}  # slot -> how many requests it sent (which one is next)
        self._chunks: list[list] = []  # a stateful model: per stream, per step, the request
        self._position: dict[int, tuple[int, int]] = {}  # slot -> (its sequence's ID, the next step)
        self._next_id = random.randrange(1, 2**40) << 16
        if target.protocol == "grpc":
            import grpc
            import tritonclient.grpc.aio as module

            unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
            self._channel = grpc.aio.insecure_channel(target.url, options=unlimited)
            self._infer = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            self.client = module.InferenceServerClient(target.url)  # statistics and shared memory calls
        else:
            import tritonclient.http.aio as module

            # One TCP connection per request in flight; the default limit (100) would cap concurrency.
            self.client = module.InferenceServerClient(
                target.url, conn_limit=in_flight or self.slots, conn_timeout=target.timeout_s
            )

    async def open(self) -> None:
        """Prepare the requests (and register shared memory): with shared memory one per slot, else one
        list of every distinct request (a traffic sample's), which all slots send in turn."""
        names = {"inputs": None, "outputs": [None] * self.slots}
        if self.target.shared_memory:
            names = await self._register_shared_memory()
        build = self._grpc_request if self.target.protocol == "grpc" else self._http_request
        if self.target.sequences is not None:
            for stream in self.target.sequences.chunks:
                self._chunks.append([build(None, None, inputs, serialize=False) for inputs in stream])
            return
        if self.target.shared_memory:
            for slot in range(self.slots):
                self._requests.append([build(names["inputs"], names["outputs"][slot])])
            return
        self._requests.append([build(None, None, inputs) for inputs in self.target.every_inputs])

    def _grpc_request(
        self, input_region: str | None, output_region: str | None, inputs=None, serialize: bool = True
    ):
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=self.target.model)
        offset = 0
        for name, array in (inputs or self.target.inputs).items():
            tensor = request.inputs.add(
                name=name, datatype=WIRE_TYPES[array.dtype.name], shape=list(array.shape)
            )
            if input_region:
                _shm_parameters(tensor.parameters, input_region, array.nbytes, offset)
                offset += array.nbytes
            else:
                request.raw_input_contents.append(_raw_bytes(array))
        offset = 0
        for name, nbytes in self._output_sizes().items():
            output = request.outputs.add(name=name)
            if output_region:
                _shm_parameters(output.parameters, output_region, nbytes, offset)
                offset += nbytes
        return request.SerializeToString() if serialize else request

    def _http_request(
        self, input_region: str | None, output_region: str | None, arrays=None, serialize: bool = True
    ) -> tuple[list, list]:
        import tritonclient.http as http

        inputs, offset = [], 0
        for name, array in (arrays or self.target.inputs).items():
            tensor = http.InferInput(name, list(array.shape), WIRE_TYPES[array.dtype.name])
            if input_region:
                tensor.set_shared_memory(input_region, array.nbytes, offset)
                offset += array.nbytes
            else:
                tensor.set_data_from_numpy(array, binary_data=True)  # JSON would be slower and round floats
            inputs.append(tensor)
        outputs, offset = [], 0
        for name, nbytes in self._output_sizes().items():
            output = http.InferRequestedOutput(name, binary_data=not output_region)
            if output_region:
                output.set_shared_memory(output_region, nbytes, offset)
                offset += nbytes
            outputs.append(output)
        return inputs, outputs

    def _output_sizes(self) -> dict[str, int]:
        return {n: int(np.prod(s)) * np.dtype(d).itemsize for n, (s, d) in self.target.outputs.items()}

    async def _register_shared_memory(self) -> dict:
        """One read-only region for the inputs, one output region per request slot."""
        import tritonclient.utils.shared_memory as shm

        prefix = f"bench_{uuid.uuid4().hex[:8]}"
        arrays = list(self.target.inputs.values())
        regions = {f"{prefix}_in": (sum(a.nbytes for a in arrays), arrays)}
        output_bytes = sum(self._output_sizes().values())
        regions.update({f"{prefix}_out{slot}": (output_bytes, None) for slot in range(self.slots)})
        for name, (size, contents) in regions.items():
            handle = shm.create_shared_memory_region(name, f"/{name}", size)
            self._regions.append((name, handle))
            if contents:
                shm.set_shared_memory_region(handle, contents)
            await self.client.register_system_shared_memory(name, f"/{name}", size)
        return {"inputs": f"{prefix}_in", "outputs": [f"{prefix}_out{slot}" for slot in range(self.slots)]}

    async def send(self, slot: int = 0) -> str:
        """One request; '' when it succeeded, else its status."""
        if self._chunks:
            return await self._send_chunk(slot)
        request = self.next_request(slot)
        try:
            if self.target.protocol == "grpc":
                await self._infer(request, timeout=self.target.timeout_s)
            else:
                inputs, outputs = request
                await asyncio.wait_for(
                    self.client.infer(self.target.model, inputs, outputs=outputs), self.target.timeout_s
                )
        except Exception as error:  # noqa: BLE001 - every failure is counted by its status
            return status_of(error, self.target.protocol)
        return ""

    def next_request(self, slot: int = 0):
        """The slot's next prepared request: the requests of its list in turn (one list shared by every
        slot without shared memory, so the load walks through all the traffic whatever the concurrency)."""
        key = slot % len(self._requests)
        prepared = self._requests[key]
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return prepared[turn % len(prepared)]

    async def end_sequences(self) -> None:
        """Each sequence still open gets its next chunk flagged END (not counted), so the server does not
        hold them until they time out (it waits for open sequences before it stops)."""
        for slot in list(self._position):
            await self._send_chunk(slot, end=True)

    async def _send_chunk(self, slot: int, end: bool = False) -> str:
        """The slot's sequence's next chunk (START on its first, END on its last); after END or a failure
        the slot starts a new sequence."""
        length = self.target.sequences.length
        if slot not in self._position:
            self._position[slot] = (self._next_id, 0)
            self._next_id += 1
        sequence_id, step = self._position[slot]
        stream = self._chunks[slot % len(self._chunks)]
        request = stream[step % len(stream)]
        start, end = step == 0, end or step == length - 1
        try:
            if self.target.protocol == "grpc":
                request.parameters["sequence_id"].int64_param = sequence_id
                request.parameters["sequence_start"].bool_param = start
                request.parameters["sequence_end"].bool_param = end
                await self._infer(request.SerializeToString(), timeout=self.target.timeout_s)
            else:
                inputs, outputs = request
                call = self.client.infer(
                    self.target.model,
                    inputs,
                    outputs=outputs,
                    sequence_id=sequence_id,
                    sequence_start=start,
                    sequence_end=end,
                )
                await asyncio.wait_for(call, self.target.timeout_s)
        except Exception as error:  # noqa: BLE001 - every failure is counted by its status
            del self._position[slot]
            return status_of(error, self.target.protocol)
        if end:
            del self._position[slot]
        else:
            self._position[slot] = (sequence_id, step + 1)
        return ""

    async def statistics(self) -> dict:
        """The target's statistics; an ensemble's: every model's (its steps' too) in one call."""
        model = "" if self.target.steps else self.target.model
        if self.target.protocol == "grpc":
            return await self.client.get_inference_statistics(model, as_json=True)
        return await self.client.get_inference_statistics(model)

    async def close(self) -> None:
        import tritonclient.utils.shared_memory as shm

        for name, handle in self._regions:
            try:
                await self._unregister(name)
            finally:
                shm.destroy_shared_memory_region(handle)
        self._regions = []
        if self.target.protocol == "grpc":
            await self._channel.close()
        await self.client.close()

    async def _unregister(self, name: str, attempts: int = 20) -> None:
        """Triton refuses while a just-answered request still holds the region; it lets go within ms."""
        for attempt in range(attempts):
            try:
                await self.client.unregister_system_shared_memory(name)
                return
            except Exception as error:  # noqa: BLE001 - both clients raise their own exception types
                if "in use" not in str(error) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.05)


def _raw_bytes(array: np.ndarray) -> bytes:
    """A tensor's raw_input_contents: BYTES (text, encoded images) as Triton's length-prefixed items."""
    if array.dtype != np.object_:
        return array.tobytes()
    from tritonclient.utils import serialize_byte_tensor

    serialized = serialize_byte_tensor(array)
    return serialized.item() if serialized.size else b""


def _shm_parameters(parameters, region: str, nbytes: int, offset: int) -> None:
    """Triton's shared-memory request parameters (the gRPC spelling of set_shared_memory)."""
    parameters["shared_memory_region"].string_param = region
    parameters["shared_memory_byte_size"].int64_param = nbytes
    if offset:
        parameters["shared_memory_offset"].int64_param = offset


class Load:
    """Keeps the load running in the background and records every completion."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.completions: list[Completion] = []
        self.schedule_lag_ms: list[float] = []
        self._tasks: list[asyncio.Task] = []
        self._running = False

    def start_closed_loop(self, concurrency: int) -> None:
        """`concurrency` requests always in flight: each worker sends the next as soon as one returns."""
        self._running = True
        self._tasks = [asyncio.create_task(self._worker(slot)) for slot in range(concurrency)]

    def start_open_loop(self, rate: float, poisson: bool, seed: int = 0) -> None:
        """Requests sent at `rate` per second (constant or Poisson gaps), whether or not earlier ones returned."""
        self._running = True
        self._tasks = [asyncio.create_task(self._scheduler(rate, poisson, np.random.default_rng(seed)))]

    async def _worker(self, slot: int) -> None:
        while self._running:
            sent = time.perf_counter()
            status = await self.connection.send(slot)
            self.completions.append(Completion(sent, time.perf_counter(), status))

    async def _scheduler(self, rate: float, poisson: bool, rng: np.random.Generator) -> None:
        in_flight: set[asyncio.Task] = set()
        due = time.perf_counter()
        while self._running:
            due += rng.exponential(1.0 / rate) if poisson else 1.0 / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= OPEN_LOOP_MAX_IN_FLIGHT:
                self.completions.append(Completion(due, time.perf_counter(), "client overrun"))
                continue
            self.schedule_lag_ms.append((time.perf_counter() - due) * 1e3)
            task = asyncio.create_task(self._one())
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight)

    async def _one(self) -> None:
        sent = time.perf_counter()
        status = await self.connection.send()
        self.completions.append(Completion(sent, time.perf_counter(), status))

    async def stop(self) -> None:
        """Stop sending and let the requests in flight finish."""
        self._running = False
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
