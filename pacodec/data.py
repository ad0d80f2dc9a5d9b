"""Datasets: frames from clips (every Nth, resized) and Atari recordings through ale-py.

Two sources of real Pac-Man frames:

- the workshop's clips in ``../shared/data/pacman/`` (160 columns × 200 rows, 30 fps),
  read when present and never copied into the project; :func:`shared_clip` finds them;
- gameplay recorded from the Atari 2600 ROMs that ``ale-py`` ships (60 fps;
  Ms. Pac-Man 210×160, Pac-Man 250×160, rows × columns), always available.

Frames are (H, W, 3) uint8 RGB throughout; stacks are (N, H, W, 3) uint8.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pacodec import video
from pacodec.errors import InputError, OutputError

__all__ = [
    "GEOMETRY",
    "SHARED_CLIPS",
    "TRAIN_CLIPS",
    "VAL_CLIPS",
    "TEST_CLIPS",
    "ATARI_FPS",
    "record_atari",
    "write_atari_clip",
    "extract",
    "load_frames",
    "shared_clip",
]

GEOMETRY = (160, 200)  # (width, height): the workshop's frames, 200 rows × 160 columns

# ../shared/data/pacman beside the repository.
SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pacman"
TRAIN_CLIPS = ["clip0", "clip4", "clip5", "clip6", "clip7"]
VAL_CLIPS = ["clip8"]
TEST_CLIPS = ["clip9"]

ATARI_FPS = 60  # the 2600 draws 60 frames a second (NTSC)

# How long the agent keeps one direction, in agent steps: long enough to run down
# corridors, short enough to turn often.
_HOLD_STEPS = (4, 40)
_DIRECTIONS = ("UP", "RIGHT", "LEFT", "DOWN")


def shared_clip(name: str) -> Path | None:
    """Path of the shared clip ``name`` (``"clip0"`` or ``"clip0.mp4"``), or None when
    the shared folder or that clip is absent."""
    path = SHARED_CLIPS / (name if name.endswith(".mp4") else f"{name}.mp4")
    return path if path.is_file() else None


def record_atari(
    *, game: str = "ms_pacman", frames: int = 300, seed: int = 0, frameskip: int = 2
) -> Iterator[np.ndarray]:
    """Yield ``frames`` screens of real gameplay of ``game`` ("ms_pacman", "pacman", or
    any ROM ale-py ships), one every ``frameskip`` emulator frames, as (H, W, 3) uint8
    RGB at the console's native size (210×160 for Ms. Pac-Man, 250×160 for Pac-Man).

    The player is a simple agent: it holds a random direction for a random number of
    steps, both drawn from ``np.random.default_rng(seed)``; the game restarts on game
    over. The emulator is seeded with ``seed`` and sticky actions are off, so a seed
    always gives the same frames.
    """
    if frames < 0:
        raise InputError(f"frames must be >= 0, got {frames}")
    if frameskip < 1:
        raise InputError(f"frameskip must be >= 1, got {frameskip}")
    ale = _load_game(game, seed)
    rng = np.random.default_rng(seed)
    actions = _direction_actions(ale)
    action, hold = actions[0], 0
    for _ in range(frames):
        if hold == 0:
            action = actions[int(rng.integers(len(actions)))]
            hold = int(rng.integers(*_HOLD_STEPS))
        hold -= 1
        for _ in range(frameskip):
            ale.act(action)
            if ale.game_over():
                ale.reset_game()
                break
        yield ale.getScreenRGB().copy()


def _load_game(game: str, seed: int):  # -> ale_py.ALEInterface
    # Imported here: ale-py (the "atari" extra) is only needed for recordings, and it
    # is slow to import.
    from .extras import require

    ale_py = require("ale_py", "recording Atari play")
    from ale_py import roms

    # The emulator's own log (ROM banners, settings) goes to stderr; keep errors only.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    try:
        with warnings.catch_warnings():
            # ale-py warns before returning None for an unknown name; we raise instead.
            warnings.simplefilter("ignore")
            rom = roms.get_rom_path(game)
    except Exception as error:  # ale-py raises different types across versions
        raise InputError(f"unknown Atari game {game!r} ({error})") from None
    if rom is None or not Path(rom).is_file():
        raise InputError(f"unknown Atari game {game!r}: ale-py ships no such ROM")
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", int(seed) % (1 << 31))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)  # we skip frames ourselves, so every screen is real
    ale.loadROM(str(rom))
    return ale


def _direction_actions(ale) -> list:
    """The game's four joystick directions (or its whole minimal set, if it has none)."""
    minimal = list(ale.getMinimalActionSet())
    directions = [a for a in minimal if a.name in _DIRECTIONS]
    return directions or minimal


def write_atari_clip(
    path: str | os.PathLike[str],
    *,
    game: str = "ms_pacman",
    frames: int = 300,
    seed: int = 0,
    frameskip: int = 2,
) -> None:
    """Record :func:`record_atari` gameplay to ``path`` through :class:`video.VideoWriter`
    at 60/``frameskip`` fps. Use ``.mkv`` for a lossless clip (``.mp4`` is lossy and
    pads odd sizes; a directory gets PNG frames)."""
    screens = record_atari(game=game, frames=frames, seed=seed, frameskip=frameskip)
    first = next(screens, None)
    if first is None:
        raise InputError("write_atari_clip needs at least one frame")
    height, width = first.shape[:2]
    with video.VideoWriter(
        path, fps=Fraction(ATARI_FPS, frameskip), width=width, height=height
    ) as writer:
        writer.write(first)
        for screen in screens:
            writer.write(screen)


def _every_nth(source: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    for index, frame in enumerate(video.iter_frames(source)):
        if index % every == 0:
            yield index, frame


def extract(
    videos: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    every: int = 10,
    size: tuple[int, int] = GEOMETRY,
) -> int:
    """Write every ``every``-th frame (0, every, 2·every, ...) of each video, resized to
    ``size`` = (width, height) with area interpolation, as ``<stem>_<frame:06d>.png`` in
    ``out_dir`` (created if needed). Returns the number of PNGs written."""
    if every < 1:
        raise InputError(f"every must be >= 1, got {every}")
    width, height = size
    sources = [Path(v) for v in videos]
    stems = [s.stem for s in sources]
    if len(set(stems)) != len(stems):
        raise InputError(f"videos must have distinct names, got {stems}")
    target = Path(out_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{target}: cannot create directory ({error.strerror})") from None
    count = 0
    for source in sources:
        for index, frame in _every_nth(source, every):
            name = target / f"{source.stem}_{index:06d}.png"
            bgr = cv2.cvtColor(video.fit(frame, width, height), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(name), bgr):
                raise OutputError(f"{name}: cannot write PNG")
            count += 1
    return count


def load_frames(
    paths: Sequence[str | os.PathLike[str]],
    *,
    size: tuple[int, int] = GEOMETRY,
    every: int = 1,
    max_frames: int | None = None,
) -> np.ndarray:
    """Frames of video files and/or directories of images, every ``every``-th of each
    source, resized to ``size`` = (width, height) with :func:`video.fit`, stacked as
    (N, height, width, 3) uint8; at most ``max_frames`` in all."""
    if every < 1:
        raise InputError(f"every must be >= 1, got {every}")
    if max_frames is not None and max_frames < 0:
        raise InputError(f"max_frames must be >= 0, got {max_frames}")
    width, height = size
    stack: list[np.ndarray] = []
    for source in paths:
        if max_frames is not None and len(stack) >= max_frames:
            break
        for _, frame in _every_nth(Path(source), every):
            stack.append(video.fit(frame, width, height))
            if max_frames is not None and len(stack) >= max_frames:
                break
    if not stack:
        return np.zeros((0, height, width, 3), np.uint8)
    return np.stack(stack)
