"""Resolve what a spec refers to: `module:function` callables and `.npz` data files.

`module` is first looked up as `<module>.py` inside the model's folder (so every zoo model can have its
own `model.py` without clashing), then as an importable dotted module.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable

import numpy as np

from triton_repo.core.errors import SpecError
from triton_repo.core.spec import LoadedSpec


def load_callable(loaded: LoadedSpec, reference: str, field: str) -> Callable:
    module_name, function_name = reference.split(":")
    local_file = loaded.folder / (module_name.replace(".", "/") + ".py")
    if local_file.is_file() and not local_file.resolve().is_relative_to(loaded.folder.resolve()):
        raise SpecError(
            f"{loaded.path}: {field}: {local_file.name} is a symlink to {local_file.resolve()}, outside the "
            f"model folder {loaded.folder} (copy the file into the model folder)"
        )
    if local_file.is_file():
        folder_key = hashlib.sha256(str(loaded.folder.resolve()).encode()).hexdigest()[:12]
        qualified = f"triton_repo_zoo.{loaded.spec.name}_{folder_key}.{module_name}"
        module = sys.modules.get(qualified)
        if module is None:
            import_spec = importlib.util.spec_from_file_location(qualified, local_file)
            module = importlib.util.module_from_spec(import_spec)
            sys.path.insert(0, str(loaded.folder))  # let the module import its siblings
            try:
                import_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(loaded.folder))
            sys.modules[qualified] = module
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise SpecError(
                f"{loaded.path}: {field}: module '{module_name}' not found: no {local_file.name} in "
                f"{loaded.folder} and no importable module ({error.msg})"
            ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise SpecError(f"{loaded.path}: {field}: '{module_name}' has no function '{function_name}'")
    return function


def load_arrays(loaded: LoadedSpec, field: str, check: bool = True) -> dict[str, np.ndarray]:
    """The input arrays named by data.<field>, checked against the spec's inputs (unless `check` is
    False: data.sequence has a shape of its own, checked by core.sequence)."""
    reference = getattr(loaded.spec.data, field)
    where = f"data.{field}"
    if reference is None:
        raise SpecError(f"{loaded.path}: {where} is not set")
    if reference.endswith(".npz"):
        with np.load(loaded.resolve_file(reference, where), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    else:
        function = load_callable(loaded, reference, where)
        if field == "eval":
            _refuse_placeholder(loaded, reference, function)
        arrays = function()
        if not isinstance(arrays, dict):
            raise SpecError(
                f"{loaded.path}: {where}: {reference} returned {type(arrays).__name__}, "
                "expected a dict of input name -> numpy array"
            )
    return check_inputs(loaded, arrays, where) if check else arrays


def refuse_placeholder_eval(loaded: LoadedSpec) -> None:
    """A spec that asks for lower precisions on eval data marked as a random placeholder (the stub
    `triton-repo init` writes, until its data/ holds files) is refused before any work."""
    reference = loaded.spec.data.eval
    if loaded.spec.lower_precisions and reference is not None and not reference.endswith(".npz"):
        _refuse_placeholder(loaded, reference, load_callable(loaded, reference, "data.eval"))


def placeholder_eval(loaded: LoadedSpec) -> bool:
    """Whether data.eval is the random placeholder of init's stub (its data/ holds no files yet)."""
    reference = loaded.spec.data.eval
    if reference is None or reference.endswith(".npz"):
        return False
    return bool(getattr(load_callable(loaded, reference, "data.eval"), "random_placeholder", False))


def _refuse_placeholder(loaded: LoadedSpec, reference: str, function: Callable) -> None:
    if getattr(function, "random_placeholder", False):
        raise SpecError(
            f"{loaded.path}: data.eval ({reference}) is random placeholder data: the accuracy gate would "
            "measure nothing; put your own examples where its docstring says, or list only fp32 in "
            "precision.variants"
        )


def load_labels(loaded: LoadedSpec, eval_inputs: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """data.eval_labels (module:function, or an .npz holding one array), one entry per eval row, in the
    form the spec's metric reads: a class per row (-1: unknown) for the classification metrics; boxes for
    `detection` (a list of [n, 5] arrays, x1, y1, x2, y2, class in the input's pixels, returned as one
    [boxes, 6] array whose first column is the row); a mask per row for `dense` (class indices, or 0/1);
    a string per row for `ctc`; anything with one entry per row for `custom`. `eval_inputs`, when the
    caller has them, spare loading the eval rows again to count them."""
    reference = loaded.spec.data.eval_labels
    where = "data.eval_labels"
    if reference is None:
        raise SpecError(f"{loaded.path}: {where} is not set")
    if reference.endswith(".npz"):
        with np.load(loaded.resolve_file(reference, where), allow_pickle=False) as archive:
            if len(archive.files) != 1:
                raise SpecError(f"{loaded.path}: {where}: '{reference}' must hold exactly one array")
            given = archive[archive.files[0]]
    else:
        given = load_callable(loaded, reference, where)()
    eval_inputs = load_arrays(loaded, "eval") if eval_inputs is None else eval_inputs
    rows = next((len(a) for a in eval_inputs.values() if a.ndim), 1)
    metric = loaded.spec.accuracy.metric if loaded.spec.accuracy else None
    labels = _labels_for(metric, given, rows, f"{loaded.path}: {where}")
    return labels


def _labels_for(metric: str | None, given, rows: int, where: str) -> np.ndarray:
    if metric == "detection":
        if isinstance(given, np.ndarray) and given.ndim == 2 and given.shape[1] == 6:
            boxes = given.astype(np.float32)
        else:
            try:
                per_row = [np.asarray(b, np.float32).reshape(-1, 5) for b in given]
            except (TypeError, ValueError):
                raise SpecError(
                    f"{where}: expected one [n, 5] array per eval row (x1, y1, x2, y2, class), or one "
                    "[boxes, 6] array (row, x1, y1, x2, y2, class)"
                ) from None
            if len(per_row) != rows:
                raise SpecError(f"{where}: boxes for {len(per_row)} rows, but there are {rows} eval rows")
            boxes = np.concatenate(
                [
                    np.concatenate([np.full((len(b), 1), i, np.float32), b], axis=1)
                    for i, b in enumerate(per_row)
                ]
                or [np.zeros((0, 6), np.float32)]
            )
        if len(boxes) and (boxes[:, 0].min() < 0 or boxes[:, 0].max() >= rows):
            raise SpecError(f"{where}: a box names a row outside the {rows} eval rows")
        return boxes
    if metric == "ctc":
        texts = np.array([str(t) for t in given], dtype=str)
        if texts.shape != (rows,):
            raise SpecError(f"{where}: expected one string per eval row ({rows}), got {texts.shape[0]}")
        return texts
    labels = np.asarray(given)
    if metric == "dense":
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
            raise SpecError(f"{where}: expected an integer mask per eval row, got {labels.dtype}")
    elif metric != "custom" and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
        raise SpecError(
            f"{where}: expected a 1-D integer array of classes, got {labels.dtype} {labels.shape}"
        )
    if len(labels) != rows:
        raise SpecError(f"{where}: {len(labels)} labels for {rows} eval rows")
    return labels


def check_inputs(loaded: LoadedSpec, arrays: dict, where: str) -> dict[str, np.ndarray]:
    spec = loaded.spec
    expected = [t.name for t in spec.inputs]
    if sorted(arrays) != sorted(expected):
        raise SpecError(
            f"{loaded.path}: {where}: arrays are named {sorted(arrays)}, the spec's inputs are {expected}"
        )
    checked: dict[str, np.ndarray] = {}
    batch_sizes = set()
    for tensor in spec.inputs:
        batch_axis = spec.batch_axis(tensor)
        array = np.asarray(arrays[tensor.name])
        if array.dtype != np.dtype(tensor.dtype):
            if not np.can_cast(array.dtype, tensor.dtype, casting="same_kind"):
                raise SpecError(
                    f"{loaded.path}: {where}: input '{tensor.name}' has dtype {array.dtype}, "
                    f"the spec says {tensor.dtype}"
                )
            array = array.astype(tensor.dtype)
        if array.ndim != len(tensor.dims):
            raise SpecError(
                f"{loaded.path}: {where}: input '{tensor.name}' has shape {array.shape}, "
                f"the spec's dims are {tensor.dims}"
            )
        for axis, (size, dim) in enumerate(zip(array.shape, tensor.dims, strict=True)):
            if isinstance(dim, int) and size != dim:
                raise SpecError(
                    f"{loaded.path}: {where}: input '{tensor.name}' dim {axis} is {size}, the spec fixes it at {dim}"
                )
            is_batch_dim = axis == batch_axis  # any batch size; chunked to max_batch_size by users
            if isinstance(dim, str) and not is_batch_dim and not spec.axes[dim].takes(size):
                limits = spec.axes[dim]
                step = f" in steps of {limits.multiple_of}" if limits.multiple_of > 1 else ""
                raise SpecError(
                    f"{loaded.path}: {where}: input '{tensor.name}' axis '{dim}' is {size}, "
                    f"outside {limits.min}..{limits.max}{step}"
                )
        if batch_axis is not None:  # a scalar input is one value for every row
            batch_sizes.add(array.shape[batch_axis])
        checked[tensor.name] = np.require(array, requirements="C")  # keeps a 0-d scalar 0-d
    if len(batch_sizes) > 1:
        raise SpecError(f"{loaded.path}: {where}: inputs have different batch sizes {sorted(batch_sizes)}")
    return checked


def resize_axis(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Cut or cyclically repeat `array` along `axis` to `size` (values stay ones the data really has)."""
    if array.shape[axis] == size:
        return array
    return np.ascontiguousarray(np.take(array, np.arange(size) % array.shape[axis], axis=axis))


def inputs_at(
    loaded: LoadedSpec, sample: dict[str, np.ndarray], sizes: dict[str, int]
) -> dict[str, np.ndarray]:
    """The sample inputs resized so that every named axis has the size given in `sizes`."""
    result = {}
    for tensor in loaded.spec.inputs:
        array = sample[tensor.name]
        for axis, dim in enumerate(tensor.dims):
            if isinstance(dim, str):
                array = resize_axis(array, axis, sizes[dim])
        result[tensor.name] = array
    return result
