"""The ``pacodec`` command: parses arguments, calls ``pacodec.api``, maps errors to exits.

Exit status (DESIGN.md): 0 success; 2 bad input or usage (FormatError, InputError,
WeightsError); 3 output problems (OutputError); 1 only on a bug. Errors print one
line naming the file and what is wrong; ``--debug`` adds the traceback. Progress bars
go to stderr and ``--quiet`` turns them off.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from . import __version__
from .errors import PacodecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="pacodec: a learned video codec for Pac-Man gameplay.")
dataset_app = typer.Typer(no_args_is_help=True, help="Make training data: extract frames, record Atari play.")
app.add_typer(dataset_app, name="dataset")

_state = {"debug": False, "quiet": False}
F = TypeVar("F", bound=Callable[..., Any])


def _err(message: str) -> None:
    typer.echo(f"pacodec: error: {message}", err=True)


def _note(message: str) -> None:
    """One line on stderr that the user should see, unless --quiet."""
    if not _state["quiet"]:
        typer.echo(f"pacodec: note: {message}", err=True)


def _warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` while a command runs: one line, none under --quiet (and
    not Python's default of the warning's class, file, line number and source line)."""
    if not _state["quiet"]:
        text = " ".join(str(message).split())
        typer.echo(f"pacodec: warning: {text}", err=True)


def _guarded(command: F) -> F:
    """Run a command, turning pacodec's errors into one line and an exit status, and
    warnings (e.g. a dropped audio stream) into one line each."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.showwarning = _warning
            return _run(*args, **kwargs)

    def _run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PacodecError as exc:
            if _state["debug"]:
                traceback.print_exc()
            _err(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # The reader of our output went away (`pacodec models | head`): stop quietly, as
            # a tool killed by SIGPIPE would, and keep Python from complaining at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except typer.Exit:
            raise
        except Exception as exc:  # a bug: say so, and how to see more
            if _state["debug"]:
                traceback.print_exc()
            else:
                _err(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


class _Bar:
    """A tqdm bar on stderr, drawn from the first frame on (so an early error stays one
    line), only on a terminal, and never with --quiet."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.bar = total, desc, None

    def __call__(self, n: int) -> None:
        if _state["quiet"]:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="frame", file=sys.stderr,
                            leave=False, disable=None)
        self.bar.update(n)

    def write(self, line: str, err: bool = False) -> None:
        """One line of output that does not tear the bar."""
        if self.bar is None:
            typer.echo(line, err=err)
        else:
            self.bar.write(line, file=sys.stderr if err else sys.stdout)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pacodec {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, summaries, notes or warnings.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    _state["quiet"], _state["debug"] = quiet, debug
    warnings.showwarning = _warning


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model id (see `pacodec models`; default pac-q8).")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Folder of weights not shipped (a training run's output).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Replace an existing output file, or a folder of frame_*.png that pacodec wrote; never another folder, a device, the input or a folder holding it.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
GopOpt = Annotated[Optional[int], typer.Option("--gop", help="At most N frames from one intra frame to the next (default 250 for pac models; an intra frame also starts each scene cut); 1 = all intra, every frame decodes alone.")]
LambdaOpt = Annotated[float, typer.Option("--lambda", help="Scale of λ in the predicted-frame block decisions (higher: fewer bytes).")]


@app.command()
@_guarded
def encode(
    inputs: Annotated[list[str], typer.Argument(help="Video files or folders of PNG/JPEG/BMP frames, at most 4096 pixels a side and 4096x2304 pixels a frame (the .pcz keeps the source size; scale bigger videos down first).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .pcz file to write; with several inputs, a folder (made if missing) that gets one <input name>.pcz each.")],
    model: ModelOpt = "pac-q8",
    quantizer: Annotated[Optional[str], typer.Option("--quantizer", help="none, naive, scale, kmeans (fixed-width models) or entropy (pac models).")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", help="Stop after N frames.")] = None,
    gop: GopOpt = None,
    lam: LambdaOpt = 1.0,
    fit: Annotated[str, typer.Option("--fit", help="How a video of another shape meets the model's 160x200 (a 0.8 aspect ratio). stretch (default): resized to fill it, so the aspect ratio changes (a 640x360 video's circles become ellipses; a warning says so when it changes by over 6%). pad: resized to fit inside keeping the aspect ratio, the rest black (letterbox); the file records where the picture is, and `decode --size source` crops it back.")] = "stretch",
    force: ForceOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Several inputs: encode N at once (default: one per core).")] = None,
) -> None:
    """Compress a video into a .pcz file, or several videos into a folder of them.

    Every model codes a fixed geometry (160x200 for the shipped ones): a video of
    another size is resized to it, stretched (default) or letterboxed (--fit pad).

    Several inputs: one process per core and one progress bar for all their frames.
    A file that fails is reported in one line, the others are finished; exit status: the first failure's.
    """
    from . import api, video

    if len(inputs) > 1:
        _encode_many(inputs, output, jobs=jobs, model=model, quantizer=quantizer, max_frames=max_frames,
                     gop=gop, lam=lam, force=force, weights_dir=weights, device=device)
        return
    (input,) = inputs
    known = [n for n in (video.probe(input).frames, max_frames) if n]
    bar = _Bar(min(known) if known else None, "encode")
    try:
        info = api.encode(input, output, model=model, quantizer=quantizer, max_frames=max_frames,
                          force=force, weights_dir=weights, device=device, progress=bar, gop=gop, lam=lam,
                          fit=fit)
    finally:
        bar.close()
    if not _state["quiet"]:
        typer.echo(f"{output}: {info['frames']} frames, {info['file_bytes']} bytes, "
                   f"{info['bytes_per_frame']:.1f} bytes/frame, ratio {info['ratio']:.2f}")


def _encode_many(inputs: list[str], output: Path, *, jobs: int | None, max_frames: int | None,
                 **options: Any) -> None:
    """``encode a b c -o folder``: pacodec.batch does the work; this shows it."""
    from . import batch, video
    from .errors import InputError

    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be at least 1, got {max_frames}")
    batch.output_paths(inputs, output)  # refuse clashing names before probing anything
    total: int | None = 0
    for name in inputs:
        try:
            known = [n for n in (video.probe(name).frames, max_frames) if n]
        except PacodecError:
            known = []  # this file fails in its turn, and is reported then
        total = total + min(known) if known and total is not None else None
    bar = _Bar(total, f"encode {len(inputs)} files")

    def done(result: "batch.EncodeResult") -> None:
        if not result.ok:
            bar.write(f"pacodec: error: {result.error}", err=True)
        elif not _state["quiet"] and result.info:
            info = result.info
            bar.write(f"{result.output}: {info['frames']} frames, {info['file_bytes']} bytes, "
                      f"{info['bytes_per_frame']:.1f} bytes/frame, ratio {info['ratio']:.2f}")

    try:
        results = batch.encode_many(inputs, output, jobs=jobs, progress=bar, done=done,
                                    max_frames=max_frames, **options)
    finally:
        bar.close()
    failed = [r for r in results if not r.ok]
    if failed:
        _err(f"{len(failed)} of {len(results)} files failed; the others are in {output}")
        raise typer.Exit(failed[0].exit_code)


@app.command()
@_guarded
def decode(
    input: Annotated[Path, typer.Argument(help="The .pcz file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help=".mkv (lossless FFV1: exactly the decoded frames), a folder for PNGs (lossless), or .mp4 (H.264, lossy: see --pix-fmt).")],
    size: Annotated[str, typer.Option("--size", help="coded (the model's geometry as decoded, letterbox bars included) or source (the input's size and aspect ratio: a --fit pad file's picture is cropped out, then resized).")] = "coded",
    pix_fmt: Annotated[Optional[str], typer.Option("--pix-fmt", help=".mp4 only. yuv444p (default): full colour resolution, about 47 dB from the decoded frames (~1 KB a frame); plays in FFmpeg, VLC, mpv, Chrome, not Safari/QuickTime. yuv420p: plays anywhere, but halves colour resolution, which pixel art cannot take (about 26 dB).")] = None,
    salvage: Annotated[bool, typer.Option("--salvage", help="Skip damaged records, stop cleanly at a cut.")] = False,
    force: ForceOpt = False,
    weights: WeightsOpt = None,
    force_weights: Annotated[bool, typer.Option("--force-weights", help="Decode with weights whose sha256 is not the file's (the pictures will differ from what the encoder saw).")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Decode a .pcz file into a video or PNG frames."""
    from . import api

    total = api.probe(input)["frames"] if not salvage else None
    bar = _Bar(total, "decode")
    try:
        result = api.decode(input, output, size=size, pix_fmt=pix_fmt, force=force, salvage=salvage,
                            weights_dir=weights, device=device, progress=bar, force_weights=force_weights)
    finally:
        bar.close()
    if result["damaged"]:
        typer.echo(f"{input}: skipped {len(result['damaged'])} damaged frame(s), repeated the last good "
                   f"frame: {result['damaged']}", err=True)
    if result["output_lossy"]:
        _note(f"{output}: PSNR {result['output_psnr']:.1f} dB against the decoded frames: the video "
              "loses quality the .pcz holds (use .mkv, PNGs or --pix-fmt yuv444p to keep it)")
    if not _state["quiet"]:
        typer.echo(f"{output}: {result['frames']} frames {result['width']}x{result['height']} "
                   f"at {result['fps']:g} fps")


@app.command()
@_guarded
def info(
    input: Annotated[Path, typer.Argument(help="The .pcz file.")],
    json_out: JsonOpt = False,
) -> None:
    """Every part of a .pcz file with its bytes (reads the header and index, never the model)."""
    from . import api

    facts = api.probe(input)
    if json_out:
        typer.echo(json.dumps(facts, indent=2))
        return
    typer.echo(render_info(facts))


def render_info(facts: dict[str, Any]) -> str:
    """The human-readable ``info`` table."""
    size = facts["file_bytes"]
    lines = [
        f"file        {facts['file']}  (format {facts['version']}{'' if facts['complete'] else ', no trailer: read by scanning'})",
        f"frames      {facts['frames']} ({facts['intra_frames']} intra, {facts['predicted_frames']} predicted), "
        f"{facts['fps']:g} fps",
        f"geometry    {facts['width']}x{facts['height']} coded, {facts['source_width']}x{facts['source_height']} source"
        + (f"; fit {facts['fit']}, picture {facts['picture'][2]}x{facts['picture'][3]} at "
           f"({facts['picture'][0]}, {facts['picture'][1]})" if "fit" in facts else ", stretched"),
        *(f"{('model', 'residual', 'key ref', 'symbols')[min(i, 3)]:<12}{m['id']}  weights sha256 {m['weights_sha256']}"
          for i, m in enumerate(facts["models"])),
        f"quantizer   {facts['quantizer']}, codes {facts['code_dtype']} {'x'.join(map(str, facts['code_shape']))}",
        f"entropy     {facts['entropy_coder']}" + (f", tables sha256 {facts['table_digest']}" if facts['table_digest'] else ""),
        "",
        f"{'part':<10}{'bytes':>12}{'share':>9}{'per frame':>12}",
    ]
    frames = max(facts["frames"], 1)
    for name, value in facts["parts"].items():
        lines.append(f"{name:<10}{value:>12,}{100 * value / size:>8.2f}%{value / frames:>12.1f}")
    if facts.get("other_bytes"):
        other = facts["other_bytes"]
        lines.append(f"{'cut/damaged':<10}{other:>12,}{100 * other / size:>8.2f}%{other / frames:>12.1f}")
    total = sum(facts["parts"].values()) + facts.get("other_bytes", 0)
    lines.append(f"{'total':<10}{total:>12,}{100 * total / size:>8.2f}%{total / frames:>12.1f}"
                 + ("" if total == size else "   MISMATCH with file size!"))
    lines.append("")
    if facts["predicted_frames"]:
        by_type = facts["bytes_by_type"]
        lines.append("by type     " + "; ".join(
            f"{kind} {by_type[kind]:,} bytes in {n} frames ({by_type[kind] / n:.1f} a frame)"
            for kind, n in (("intra", facts["intra_frames"]), ("predicted", facts["predicted_frames"])) if n))
    if facts["intra_at"] is not None:
        shown = ", ".join(map(str, facts["intra_at"][:12])) + (", …" if len(facts["intra_at"]) > 12 else "")
        lines.append(f"GOP         intra frames at {shown} (at most {facts['gop']} apart); "
                     f"a seek decodes at most {facts['longest_gop']} frames")
    if facts["entropy_coder"] != "none":
        lines.append(f"codes       {facts['parts']['codes']:,} bytes entropy-coded; "
                     f"{facts['codes_fixed_width']:,} at fixed width")
        if facts.get("layers"):
            layers = facts["layers"]
            lines.append(f"  layers    base {layers['base']:,} + refinement {layers['refinement']:,} "
                         f"+ lengths {layers['layer_lengths']:,} bytes")
        if facts.get("key_frames"):
            keys = facts["key_frames"]
            lines.append(f"  key       {keys['reference']} intra frames predicted from the learned reference, "
                         f"{keys['own']} coded on their own")
    ratio = f"1/{facts['ratio']:.2f}" if facts["ratio"] else "-"
    codes_ratio = f"1/{facts['codes_ratio']:.2f}" if facts["codes_ratio"] else "-"
    lines.append(f"raw         {facts['raw_bytes']:,} bytes ({facts['frames']} x {facts['width']}x{facts['height']}x3)")
    lines.append(f"ratio       {ratio} of raw (whole file); codes ratio {codes_ratio}; "
                 f"{facts['bytes_per_frame'] or 0:.1f} bytes/frame")
    return "\n".join(lines)


@app.command()
@_guarded
def models(
    json_out: JsonOpt = False,
    weights: WeightsOpt = None,
    all_ids: Annotated[bool, typer.Option("--all", help="Also the ids not meant for coding with: networks used through other ids (pac, pac-hi, pac-res) and the tests' tiny-* models.")] = False,
) -> None:
    """The models to code with: what each is, its default settings, and the figures the
    manifest measured at them (PSNR, bytes a frame; `--json` adds code sizes and every
    measured setting)."""
    from . import api

    rows = api.list_models(weights, include_internal=all_ids)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    table, clips = [], set()
    for r in rows:
        d = r["defaults"]
        defaults = d["quantizer"] + (f", GOP {d['gop']}" if d["gop"] > 1 else ", all intra")
        m = r["measured"]
        measured = f"{m['psnr']:.2f} dB, {m['bytes_per_frame']:,.0f} B/frame" if m else "-"
        if m:
            clips.add(f"{m.get('data', '?')}, {m.get('frames', '?')} frames")
        table.append((r["id"], "yes" if r["weights"] else "no", defaults, measured, r["description"]))
    # The clip the figures were measured on heads their column (PSNR and bytes a frame).
    head = ("id", "weights", "defaults", "measured" + (f" on {clips.pop()}" if len(clips) == 1 else ""),
            "description")
    widths = [max(len(head[i]), *(len(row[i]) for row in table)) + 2 for i in range(len(head) - 1)]
    for row in [head, *table]:
        typer.echo("".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + row[-1])


@app.command()
@_guarded
def compare(
    a: Annotated[str, typer.Argument(help="Video or .pcz (the order does not matter).")],
    b: Annotated[str, typer.Argument(help="Video or .pcz.")],
    json_out: JsonOpt = False,
    ssim_every: Annotated[int, typer.Option("--ssim-every", help="SSIM on every Nth frame.")] = 1,
    frames: Annotated[Optional[int], typer.Option("--frames", help="Compare only the first N frames of each (otherwise both must have as many).")] = None,
    weights: WeightsOpt = None,
) -> None:
    """PSNR and SSIM between two videos or .pcz files (DESIGN.md, Measuring).

    A .pcz is compared at its coded geometry, the other side resized to it; two videos
    of different sizes at the smaller one's. Either order gives the same figures.
    """
    from . import api

    bar = _Bar(frames, "compare")
    try:
        result = api.compare(a, b, ssim_every=ssim_every, frames=frames, weights_dir=weights, progress=bar)
    finally:
        bar.close()
    if json_out:
        typer.echo(json.dumps(result))
        return
    for name in result["resized"]:
        how = "letterboxed into" if result.get("fit") == "pad" else "resized to"
        _note(f"{name}: {how} {result['width']}x{result['height']} to compare")
    typer.echo(f"{result['frames']} frames: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}")


@app.command("eval")
@_guarded
def eval_command(
    model: Annotated[str, typer.Argument(help="Model id.")],
    data: Annotated[str, typer.Option("--data", help="A clip to measure on.")],
    quantizer: Annotated[Optional[str], typer.Option("--quantizer")] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames")] = None,
    ssim_every: Annotated[int, typer.Option("--ssim-every")] = 1,
    gop: GopOpt = None,
    lam: LambdaOpt = 1.0,
    json_out: JsonOpt = False,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """Encode a clip through a real .pcz file, decode it, and report bytes, PSNR, SSIM, speed."""
    from . import api

    r = api.evaluate(model, data, quantizer=quantizer, weights_dir=weights, device=device,
                     max_frames=max_frames, ssim_every=ssim_every, gop=gop, lam=lam)
    if json_out:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"{model} + {r['quantizer']} on {data}: {r['frames']} frames, {r['bytes_per_frame']:.1f} bytes/frame, "
               f"ratio 1/{r['ratio']:.2f} (codes 1/{r['codes_ratio']:.2f}), PSNR {r['psnr']:.2f} dB, "
               f"SSIM {r['ssim']:.4f}, encode {r['encode_fps']:.1f} fps, decode {r['decode_fps']:.1f} fps")


@app.command()
@_guarded
def train(
    model: Annotated[str, typer.Argument(help="Model id to train (see `pacodec models`).")],
    data: Annotated[list[str], typer.Option("--data", help="Video files or folders of frames (repeatable).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for checkpoints, log and weights.")],
    val: Annotated[Optional[list[str]], typer.Option("--val", help="Validation videos or folders.")] = None,
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    every: Annotated[int, typer.Option("--every", help="Use every Nth frame of the data.")] = 1,
    crop: Annotated[Optional[int], typer.Option("--crop", help="Train on random NxN windows (fully convolutional models).")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", help="Minutes; stops after the last whole epoch that fits.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --output.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Start over in an --output that holds a run of this id (its weights, checkpoint and log are replaced); without it or --resume such a folder is refused.")] = False,
    init: Annotated[Optional[Path], typer.Option("--init", help="Start from these weights (.safetensors; tensors matched by name and shape).")] = None,
    block: Annotated[Optional[int], typer.Option("--block", help="Block models (vanilla-fc-*, multilayer-fc-*): train only block K (0-15); the 16 shards are joined when all are in --output.")] = None,
    pca: Annotated[bool, typer.Option("--pca", help="Start from the closed-form principal-components solution on --data (workshop-size FC models, the VAE's linear layers); --epochs 0 keeps it as is.")] = False,
    device: DeviceOpt = "cpu",
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: override one field of the model's config (JSON value, e.g. --set beta=0.001); stored in the weights (repeatable).")] = None,
) -> None:
    """Train a model (Adam, its own loss); checkpoints every epoch; weights + manifest at the end.

    Prints the train and validation loss of each epoch (also in <output>/<id>.log.csv,
    and in <output>/tensorboard/ where TensorBoard is installed). An --output that
    holds a run of the same id is refused unless --resume or --force.
    """
    from .errors import InputError
    from .train import TrainConfig, check_run_target, run_name
    from .train import train as run_training

    if epochs < (0 if pca or init else 1) or batch_size < 1 or lr <= 0 or every < 1:
        raise InputError("--epochs (0 allowed with --pca or --init), --batch-size and --every must be "
                         "at least 1, --lr positive")
    from .device import check_device

    check_device(device)  # before the frames are read
    from .errors import WeightsError
    from .models import build_model

    if resume and force:
        raise InputError("--resume continues a run and --force starts it over: pass one")
    model_config = _config_overrides(settings or [])
    try:
        built = build_model(model, model_config)
    except WeightsError as exc:  # unknown keys: the user's --set, not a weights file
        raise InputError(f"--set: {exc}") from None
    pairs = getattr(built, "pairs", False)
    if pca and not getattr(built, "has_pca_start", False):
        raise InputError(f"--pca: {model} has no closed-form start (workshop-size FC models and vae have)")
    if block is not None and (built.family != "fc" or built.config.shared or not 0 <= block < 16):
        raise InputError(f"--block takes 0-15 and only per-block models (vanilla-fc-*, multilayer-fc-*), "
                         f"not {model}")
    # Before the frames are read (minutes for a big dataset): a run is never overwritten.
    check_run_target(output, run_name(model, block), resume=resume, force=force)
    frames = _training_frames(list(data), every, pairs)
    if len(frames) == 0:
        raise InputError("--data holds no frames")
    val_frames = _training_frames(list(val), every, pairs) if val else None
    # The command as typed, less global flags (-q, --debug) that may come before "train".
    argv = [a for a in sys.argv[1:] if a not in GLOBAL_FLAGS]
    command = "pacodec " + shlex.join(argv) if argv[:1] == ["train"] else ""  # quoted: it can be rerun
    cfg = TrainConfig(model_id=model, out_dir=output, epochs=epochs, batch_size=batch_size, lr=lr,
                      seed=seed, time_limit_min=time_limit, resume=resume, force=force, device=device, crop=crop,
                      init=init, block=block,
                      pca=pca, model_config=model_config,
                      data_description=[str(p) for p in data], command=command)
    bar = None
    epoch = [0]

    def progress(step: int, steps: int, logs: dict[str, float]) -> None:
        nonlocal bar
        if _state["quiet"]:
            return
        from tqdm import tqdm

        if bar is None or step == 1:
            if bar is not None:
                bar.close()
            epoch[0] += 1
            bar = tqdm(total=steps, desc=f"epoch {epoch[0]}", file=sys.stderr, leave=False, disable=None)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})

    def on_epoch(facts: dict[str, Any]) -> None:
        nonlocal bar
        if _state["quiet"]:
            return
        if bar is not None:  # the epoch's bar makes way for its line
            bar.close()
            bar = None
        val = f"{facts['val_loss']:.6g}" if facts["val_loss"] is not None else "- (no --val)"
        typer.echo(f"epoch {facts['epoch']}/{facts['epochs']}: train loss {facts['train_loss']:.6g}, "
                   f"val loss {val} ({facts['seconds']:.1f} s)")

    summary = run_training(cfg, frames, val_frames, progress=progress, on_epoch=on_epoch)
    if bar is not None:
        bar.close()
    if summary.get("pca"):
        typer.echo(f"{model}: started from the {summary['pca']}")
    if summary.get("refinement"):
        typer.echo(f"{model}: {summary['refinement']}")
    if summary.get("sha256"):
        typer.echo(f"{model}: {summary['epochs']} epochs, weights {summary['weights']} "
                   f"sha256 {summary['sha256']}")
        if summary.get("assembled"):
            typer.echo(f"{model}: all 16 blocks joined into {output / (model + '.safetensors')}")
    if summary.get("world", 1) > 1:
        # A torchrun rank: everything is written and the process group is closed; leave
        # without interpreter teardown, where gloo's leftover threads can abort the
        # process (train.py explains).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _config_overrides(settings: list[str]) -> dict | None:
    """``["beta=0.001", "z=256"]`` → ``{"beta": 0.001, "z": 256}`` (values are JSON, else strings)."""
    from .errors import InputError

    overrides = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides or None


def _training_frames(paths: list[str], every: int, pairs: bool):
    """N×H×W×3 frames, or for residual models N×H×W×6 consecutive pairs (within each source)."""
    import numpy as np

    from . import data as datasets

    if not pairs:
        return datasets.load_frames(paths, every=every)
    stacks = []
    for path in paths:
        frames = datasets.load_frames([path], every=every)
        if len(frames) > 1:
            stacks.append(np.concatenate([frames[:-1], frames[1:]], axis=3))
    return np.concatenate(stacks) if stacks else np.zeros((0, 200, 160, 6), np.uint8)


@dataset_app.command("extract")
@_guarded
def dataset_extract(
    videos: Annotated[list[str], typer.Argument(help="Video files.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the PNG frames.")],
    every: Annotated[int, typer.Option("--every", help="Keep every Nth frame (workshop: 10).")] = 10,
    size: Annotated[str, typer.Option("--size", help="WxH (workshop: 160x200).")] = "160x200",
) -> None:
    """Cut every Nth frame of videos into PNGs, resized with INTER_AREA."""
    from . import data as datasets
    from .errors import InputError

    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like 160x200, got {size!r}") from None
    count = datasets.extract(list(videos), output, every=every, size=(width, height))
    typer.echo(f"{output}: {count} frames")


@dataset_app.command("atari")
@_guarded
def dataset_atari(
    output: Annotated[Path, typer.Option("--output", "-o", help="Video to write (.mkv lossless, .mp4).")],
    game: Annotated[str, typer.Option("--game", help="ms_pacman or pacman.")] = "ms_pacman",
    frames: Annotated[int, typer.Option("--frames")] = 300,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    force: ForceOpt = False,
) -> None:
    """Record real Atari 2600 gameplay through ale-py, deterministically for a seed."""
    from . import data as datasets
    from .output import atomic_output

    with atomic_output(output, force=force) as partial:
        datasets.write_atari_clip(partial, game=game, frames=frames, seed=seed)
    typer.echo(f"{output}: {frames} frames of {game} (seed {seed})")


def _install_sigterm() -> None:
    # SIGTERM becomes KeyboardInterrupt, so the same cleanup (removing .partial) runs.
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. under a test runner's thread)
        pass


GLOBAL_FLAGS = {"--quiet", "-q", "--debug"}


def main(argv: list[str] | None = None) -> None:
    """Entry point. Global flags (--quiet, --debug) work before or after the command."""
    args = list(sys.argv[1:] if argv is None else argv)
    flags = [a for a in args if a in GLOBAL_FLAGS]
    rest = [a for a in args if a not in GLOBAL_FLAGS]
    _install_sigterm()
    app(args=flags + rest, prog_name="pacodec")


if __name__ == "__main__":
    main()
