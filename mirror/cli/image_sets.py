"""`images.txt`: the images a site chooses, one a line, with the platforms to keep.

    # comments and blank lines are skipped
    --platform linux/amd64            # alone on a line: for every image below it
    alpine:3.19
    ghcr.io/owner/tool:v1 --platform linux/arm64 --platform linux/amd64
    library/redis@sha256:…

A line's own `--platform`s replace the file's; none at all keeps every platform.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from mirror.upkeep.lockfile import ImageRef, parse_image


@dataclass(frozen=True, slots=True)
class ChosenImage:
    source: str  # as written
    reference: ImageRef
    platforms: tuple[str, ...]


def _platform(value: str, where: str) -> str:
    parts = value.split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"{where}: platform {value!r} is not os/arch[/variant]")
    return value


def parse_image_set(text: str, source: str = "images.txt") -> list[ChosenImage]:
    """Every image of the file; ValueError names the line that cannot be read."""
    chosen: list[ChosenImage] = []
    defaults: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        words = line.partition("#")[0].split()
        images: list[str] = []
        platforms: list[str] = []
        while words:
            word = words.pop(0)
            if word == "--platform":
                if not words:
                    raise ValueError(f"{where}: --platform needs a value")
                platforms.append(_platform(words.pop(0), where))
            elif word.startswith("--platform="):
                platforms.append(_platform(word.removeprefix("--platform="), where))
            elif word.startswith("-"):
                raise ValueError(f"{where}: unknown option {word!r}")
            else:
                images.append(word)
        if len(images) > 1:
            raise ValueError(f"{where}: one image a line ({' '.join(images)})")
        if not images:
            if platforms:
                defaults = tuple(platforms)
            continue
        reference = parse_image(images[0])
        chosen.append(ChosenImage(images[0], reference, tuple(platforms) or defaults))
    return chosen


def read_image_set(path: str) -> list[ChosenImage]:
    """From a file (`-`: stdin). OSError, UnicodeError or ValueError when unusable."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    return parse_image_set(text, path)
