"""`triton-repo init`: a model folder (model.yaml, a data stub) from a model file."""

from __future__ import annotations

from pathlib import Path

import click

from triton_repo.cli.options import models_dir_option


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@models_dir_option("Where the model folder goes when FOLDER is not given: <models-dir>/<name of the file>.")
@click.option(
    "--probe-seconds",
    type=click.FloatRange(5, 3600),
    default=60.0,
    show_default=True,
    envvar="TRITON_REPO_PROBE_SECONDS",
    show_envvar=True,
    help="How long the model may be run to learn its axes (a large model is tried at fewer sizes).",
)
@click.option(
    "--factory",
    metavar="FILE.py:FUNCTION",
    help="For a PyTorch checkpoint SOURCE: the function (or class) returning the nn.Module its weights load into.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME:SHAPE[:DTYPE]",
    help="For a PyTorch source: an example of one input of forward(), e.g. image:1x3x224x224 or ids:2x16:int64 "
    "(repeat per input; a single input is guessed from the first layer when not given).",
)
def init(
    source: Path,
    folder: Path | None,
    models_dir: Path,
    probe_seconds: float,
    factory: str | None,
    inputs: tuple[str, ...],
) -> None:
    """Write FOLDER/model.yaml and FOLDER/model.py for SOURCE, ready for `triton-repo build`.

    SOURCE is an ONNX file; a PyTorch checkpoint (.pt, .pth, .bin, .safetensors, .ckpt) with --factory
    FILE.py:FUNCTION; or FILE.py:FUNCTION alone for a network that holds its own weights. A PyTorch
    source is built, loaded and run in a child process (its inputs given with --input or guessed from its
    first layer), exported to ONNX to be probed, and written as source.factory: build exports it again.

    The file's inputs and outputs are read, then the model is run (each run in a child process, so a
    runtime crash ends that run, not init) at several sizes of every dynamic axis: axes it shares, the
    sizes it refuses (multiples of 32...), output axes that follow the inputs (a detector's anchors),
    outputs whose real shape differs from the file's. The accuracy metric is proposed from what the
    outputs look like, other readings written as commented choices. model.py reads your own examples
    from FOLDER/data/; until there are some, it gives random placeholders, on which the build serves FP32
    and refuses to measure lower precisions. The spec is loaded and its sample checked before anything
    is written, and no existing file is overwritten. `triton-repo inspect SOURCE` shows the same findings
    without writing.

    Exit codes: 0 written, 2 a file init cannot read or would overwrite.
    """
    from rich.console import Console

    from triton_repo.builders.scaffold.init import init_model
    from triton_repo.builders.scaffold.torch_source import parse_input

    given = tuple(parse_input(text) for text in inputs)
    done = init_model(source, folder, models_dir, probe_seconds, factory, given)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    probe = done.probe
    for note in done.notes:
        console.print(f"  {note}", markup=False)
    console.print(
        f"{done.name}: {len(probe.inputs)} input(s), {len(probe.outputs)} output(s), {len(probe.runs)} probe runs"
    )
    for note in probe.notes:
        console.print(f"  {note}", markup=False)
    if not probe.batched:
        console.print(f"  unbatched (max_batch_size 0): {probe.unbatched_reason}", markup=False)
    proposal = done.proposal
    if done.stateful:
        console.print(
            "  accuracy: none yet: a stateful model is gated on eval streams (docs/spec.md)", markup=False
        )
    else:
        console.print(f"  accuracy: {proposal.metric} on {proposal.output}: {proposal.why}", markup=False)
        for alternative in proposal.alternatives:
            console.print(f"    or {alternative}", markup=False)
    for path in done.files:
        click.echo(f"wrote {path}")
    click.echo(
        f"next: put your examples in {done.folder / 'data'} (see {done.folder / 'model.py'}), then "
        f"triton-repo build {done.folder}"
    )
