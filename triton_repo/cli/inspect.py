"""`triton-repo inspect MODEL`: what running an ONNX model shows about it, before any spec exists."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Write the probe record as JSON to stdout instead.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Time budget of the probe: a model whose runs are slow is tried at fewer sizes.",
)
@click.option(
    "--factory", metavar="FILE.py:FUNCTION", help="For a PyTorch checkpoint MODEL: as `init --factory`."
)
@click.option("--input", "inputs", multiple=True, metavar="NAME:SHAPE[:DTYPE]", help="As `init --input`.")
def inspect(model: Path, as_json: bool, seconds: float, factory: str | None, inputs: tuple[str, ...]) -> None:
    """Probe MODEL, an ONNX file (or a model folder whose model.yaml has source.onnx), by running it.

    MODEL may also be what `init` reads besides: a PyTorch checkpoint with --factory, FILE.py:FUNCTION, or
    a Hugging Face folder; it is built and exported to ONNX in a scratch folder, then probed.

    ONNX Runtime (CPU, one thread, in a child process, so a crash ends one run, not the command) runs the
    model at candidate sizes of each dynamic axis. Printed: the inputs and outputs with the file's dims and
    the spec's (sizes or axis names), the axes with the sizes that ran (min, opt and max were run
    together) and any multiple-of constraint, output-only axes (a detector's anchors), every run, and
    each decision in a line. Nothing is written to disk.
    """
    import json

    from triton_repo.builders.scaffold.probe import probe_as_dict, probe_model
    from triton_repo.core.log import out, step

    notes = ()
    with step(f"probing {model}"):
        if _onnx(model) and factory is None and not inputs:
            probe = probe_model(model, seconds)
        else:
            from triton_repo.builders.scaffold.init import inspect_source
            from triton_repo.builders.scaffold.torch_source import parse_input

            given = tuple(parse_input(text) for text in inputs)
            probe, notes = inspect_source(model, seconds, factory, given)
    for note in notes:
        out.print(f"{note}", markup=False)
    if as_json:
        click.echo(json.dumps(probe_as_dict(probe), indent=2))
        return
    _print_probe(probe, out)


def _onnx(model: Path) -> bool:
    """What the probe reads itself: anything but a PyTorch source or a Hugging Face folder."""
    from triton_repo.builders.scaffold.torch_source import CHECKPOINT_SUFFIXES

    text = str(model)
    pytorch = model.suffix.lower() in CHECKPOINT_SUFFIXES or ".py:" in text
    return not pytorch and not (model.is_dir() and (model / "config.json").is_file())


def _dims(dims) -> str:
    return "-" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _shapes(shapes: dict) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())


def _print_probe(probe, console) -> None:
    from rich.table import Table
    from rich.text import Text

    tensors = Table(title=f"{probe.source}: inputs and outputs")
    for column in ("", "name", "dtype", "declared", "spec dims", "note"):
        tensors.add_column(column)
    for kind, group in (("in", probe.inputs), ("out", probe.outputs)):
        for t in group:
            cells = (kind, t.name, t.dtype, _dims(t.declared), _dims(t.dims), t.note)
            tensors.add_row(*(Text(c) for c in cells))
    console.print(tensors)
    batch = probe.axes.get("batch")
    if probe.batched and batch is not None:
        console.print(Text(f"batched: max_batch_size {batch.max}"))
    else:
        console.print(Text(f"not batched (max_batch_size 0): {probe.unbatched_reason}"), soft_wrap=True)
    axes = Table(title="Axes: min, opt and max ran together")
    for column in ("axis", "min", "opt", "max", "multiple of", "output only", "why"):
        axes.add_column(column)
    for a in probe.axes.values():
        cells = (
            a.name,
            a.min,
            a.opt,
            a.max,
            a.multiple_of if a.multiple_of > 1 else "",
            "yes" if a.output_only else "",
            a.why,
        )
        axes.add_row(*(Text(str(c)) for c in cells))
    console.print(axes)
    runs = Table(title="Probe runs")
    for column in ("#", "inputs", "outputs"):
        runs.add_column(column)
    for number, run in enumerate(probe.runs, 1):
        result = Text(_shapes(run.outputs)) if run.error is None else Text(run.error, style="red")
        runs.add_row(str(number), Text(_shapes(run.inputs)), result)
    console.print(runs)
    console.print("Notes:")
    for note in probe.notes:
        console.print(Text(f"- {note}"), soft_wrap=True)  # one line each, however long
