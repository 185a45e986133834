"""Clip-id spellings of the community's lists, reduced to one comparable key.

The same clip is spelled differently by different lists and downloaders (docs/data.md §2, §9):

| spelling | example | used by |
|---|---|---|
| `<YouTube id>_<start second, 6 digits>` | `abc_000030` | VGG-SS (`vggss_test.csv`, `vggss.json`, `vggss_144k.txt`) |
| `<YouTube id>_<start ms>_<end ms>` | `abc_30000_40000` | VGGSound downloaders' file names |
| `youtube_id,start_seconds` columns | `abc,30` | VGGSound's `vggsound.csv` |
| a plain number | `10000130166` | Flickr-SoundNet |

`clip_key` maps each spelling to a key that is equal exactly when two spellings name the same clip:
`("youtube", youtube id, start in ms)`, `("number", number)` or `("raw", text)` for anything else. A
trailing media extension (`.wav`, `.jpg`, `.mp4`, ...) is ignored, since some lists (Attention10k's
`Flickr_train_144k.txt`) hold file names.

Ambiguity. YouTube ids may contain `_` and digits, so `abc_100000_110000` reads either as clip
`abc` from 100 s to 110 s, or as clip `abc_100000` at 110000 s. YouTube ids are 11 characters long:
the reading whose id has 11 characters wins; when neither or both do, the milliseconds reading wins
when its end lies after its start (a clip has a positive length), else the seconds reading.
"""

from __future__ import annotations

import re

YOUTUBE_ID_LENGTH = 11  # every YouTube video id has 11 characters
MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".jpg", ".jpeg", ".png", ".mp4", ".mkv", ".webm", ".avi", ".mov",
                  ".mat", ".npy")
_SECONDS = re.compile(r"^(?P<youtube>.+)_(?P<start>\d{1,6})$")  # abc_000030
_MILLISECONDS = re.compile(r"^(?P<youtube>.+)_(?P<start>\d+)_(?P<end>\d+)$")  # abc_30000_40000
_NUMBER = re.compile(r"^\d+$")  # Flickr-SoundNet ids

ClipKey = tuple  # ("youtube", str, int) | ("number", int) | ("raw", str)


def strip_media_suffix(clip: str) -> str:
    """`clip` without a trailing media extension (case-insensitive), e.g. `1001.wav` -> `1001`."""
    lower = clip.lower()
    for suffix in MEDIA_SUFFIXES:
        if lower.endswith(suffix):
            return clip[: -len(suffix)]
    return clip


def youtube_clip(clip: str) -> tuple[str, int] | None:
    """(YouTube id, start in ms) of a VGGSound-style id in either spelling, or None if it is neither."""
    clip = strip_media_suffix(clip.strip())
    seconds, milliseconds = _SECONDS.match(clip), _MILLISECONDS.match(clip)
    by_seconds = (seconds["youtube"], int(seconds["start"]) * 1000) if seconds else None
    by_ms = None
    if milliseconds:
        by_ms = (milliseconds["youtube"], int(milliseconds["start"]))
        ms_valid = int(milliseconds["end"]) > int(milliseconds["start"])
    if by_seconds and by_ms:
        seconds_is_youtube = len(by_seconds[0]) == YOUTUBE_ID_LENGTH
        ms_is_youtube = len(by_ms[0]) == YOUTUBE_ID_LENGTH
        if seconds_is_youtube != ms_is_youtube:
            return by_seconds if seconds_is_youtube else by_ms
        return by_ms if ms_valid else by_seconds
    return by_seconds or by_ms


def clip_key(clip: str) -> ClipKey:
    """A key equal for every spelling of one clip (see the module docstring).

    Examples: `abc_000030`, `abc_30000_40000` and `abc_30` all give ("youtube", "abc", 30000);
    `1001`, `1001.wav` give ("number", 1001) (Flickr-SoundNet's ids are numbers).
    """
    text = strip_media_suffix(clip.strip())
    if _NUMBER.match(text):
        return ("number", int(text))
    youtube = youtube_clip(text)
    if youtube is not None:
        return ("youtube", *youtube)
    return ("raw", text)


def vggss_id(youtube: str, start_seconds: float) -> str:
    """The VGG-SS spelling `<YouTube id>_<start second, 6 digits>` (start truncated to whole seconds)."""
    return f"{youtube}_{int(start_seconds):06d}"


def to_vggss_id(clip: str) -> str:
    """Any VGGSound-style spelling as the VGG-SS id, e.g. `abc_30000_40000` -> `abc_000030`.

    Raises:
        ValueError: `clip` is not a `<YouTube id>_<start>` or `<YouTube id>_<start ms>_<end ms>` id.
    """
    youtube = youtube_clip(clip)
    if youtube is None:
        raise ValueError(f"{clip!r} is not a VGGSound clip id (<YouTube id>_<start s> or "
                         "<YouTube id>_<start ms>_<end ms>)")
    return vggss_id(youtube[0], youtube[1] // 1000)
