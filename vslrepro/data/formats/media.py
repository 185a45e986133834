"""Where a split root keeps a clip's media: `<root>/<frames>/<id>.jpg` and `<root>/<audio>/<id>.wav`.

The community layout (EZ-VSL / SLAVC) names the folders `frames/` and `audio/`; a dataset may name
them otherwise (IS3's release: `visual_frames/`, `audio_wav/`; `Dataset.media()`).
"""

from __future__ import annotations

from pathlib import Path

COMMUNITY = ("frames", "audio")  # (frames folder, sounds folder)


def media_files(root: str | Path, video: str, sound: str, media: tuple[str, str] = COMMUNITY) -> tuple[Path, Path]:
    """The frame of clip `video` and the WAV of clip `sound` under a split root."""
    root = Path(root)
    return root / media[0] / f"{video}.jpg", root / media[1] / f"{sound}.wav"
