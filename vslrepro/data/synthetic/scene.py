"""Objects, frames and sounds of the embedded synthetic benchmark (docs/synthetic.md).

Each sounding class has a visual appearance (a shape, a hue and a texture family, jittered per
instance) and a sound signature (a harmonic tone with a class-specific fundamental range, number of
harmonics, amplitude- and frequency-modulation, plus a band of noise at a class-specific centre).
Silent distractors are objects of other classes or neutral (unsaturated) shapes. Backgrounds are
gradients with low-frequency texture and pixel noise.

Geometry is expressed in the 224-px test frame, the grid of the ground-truth maps; frames are drawn
at any size from it. An object's centre lies uniformly in the frame and its extent may go beyond the
border (the object is then cut): `place_object` solves for the extent whose *visible* box has the
requested area. Every shape reaches its box edges on the lines through its centre, so with the
centre inside the frame the visible box is exactly the box of the visible pixels.

Everything here is a pure function of its arguments and of an explicit numpy Generator.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass

import numpy as np

GRID = 224.0  # side of the test frame in which geometry and areas are expressed (px)
SHAPES = ("disk", "square", "diamond", "ring", "plus", "squircle", "frame", "astroid")
TEXTURES = ("plain", "hstripes", "checker", "dots", "vstripes", "diagonal")
HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "spring", "cyan", "azure", "blue", "violet",
             "magenta", "rose")
NEUTRAL = "neutral"  # label of the unsaturated distractor shapes in the object-prior set


@dataclass(frozen=True)
class ClassSpec:
    """One sounding class: how its objects look and how it sounds (centres of its distributions)."""

    name: str  # e.g. "red disk"
    shape: str  # one of SHAPES
    hue: float  # in [0, 1); instances jitter it by ±0.025
    texture: str  # one of TEXTURES
    f0: float  # centre of the fundamental range (Hz); instances jitter it by ±6 %
    harmonics: int  # number of harmonics of the tone
    am_rate: float  # amplitude-modulation rate (Hz), 0 for a steady tone
    fm_depth: float  # vibrato depth as a fraction of f0
    noise_centre: float  # centre of the class's noise band (Hz)


def class_specs(n_classes: int) -> tuple[ClassSpec, ...]:
    """The K sounding classes: distinct shapes/hues/textures and distinct sound signatures.

    Args:
        n_classes: K, 2 to 16.

    Returns:
        K ClassSpec, fixed for a given K (the seed only changes the instances).

    Raises:
        ValueError: K outside [2, 16].
    """
    if not 2 <= n_classes <= 16:
        raise ValueError(f"n_classes must lie in [2, 16], got {n_classes}")
    specs = []
    for c in range(n_classes):
        hue = c / n_classes
        shape = SHAPES[c % len(SHAPES)]
        specs.append(ClassSpec(
            name=f"{HUE_NAMES[round(hue * 12) % 12]} {shape}",
            shape=shape,
            hue=hue,
            texture=TEXTURES[c % len(TEXTURES)],
            f0=140.0 * 7.0 ** (c / (n_classes - 1)),  # 140-980 Hz, log-spaced: ≥ 14 % apart for K ≤ 16
            harmonics=1 + 2 * (c % 3),
            am_rate=(0.0, 3.0, 6.0, 10.0)[c % 4],
            fm_depth=(0.0, 0.015, 0.04)[(c // 2) % 3],
            noise_centre=500.0 * 6.0 ** (((5 * c) % n_classes) / (n_classes - 1)),  # 500-3000 Hz
        ))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):  # cannot happen for K ≤ 16; guards an edit of the tables
        raise ValueError(f"class names are not unique: {names}")
    return tuple(specs)


@dataclass(frozen=True)
class Placed:
    """One object drawn in a frame: where it is and how it looks."""

    full: tuple[float, float, float, float]  # x0, y0, x1, y1 of its whole extent (224 px, may exceed the frame)
    visible: tuple[float, float, float, float]  # the same box clipped to the frame
    shape: str
    colour: tuple[float, float, float]  # RGB in [0, 1]
    colour2: tuple[float, float, float]  # texture colour
    texture: str
    period: float  # texture period in object units (the object spans [-1, 1])
    phase: float


def _clip_box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return max(cx - w / 2, 0.0), max(cy - h / 2, 0.0), min(cx + w / 2, GRID), min(cy + h / 2, GRID)


def box_area(box: tuple[float, float, float, float]) -> float:
    """Area of an (x0, y0, x1, y1) box, 0 when empty."""
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _solve_scale(cx: float, cy: float, rw: float, rh: float, area: float) -> float:
    """The scale s at which the box (s·rw × s·rh) centred at (cx, cy), clipped to the frame, has `area`.

    The clipped width is piecewise linear in s (w while both sides are inside, w/2 + near margin
    while one is cut, the frame side when both are): the area is a product of two such functions,
    a quadratic between consecutive breakpoints, increasing in s. Solve it in closed form.
    """
    def pieces(c: float, r: float) -> list[tuple[float, float, float]]:  # (from s, slope, intercept)
        near, far = min(c, GRID - c), max(c, GRID - c)
        return [(0.0, r, 0.0), (2 * near / r, r / 2, near), (2 * far / r, 0.0, GRID)]

    def linear(parts: list, s: float) -> tuple[float, float]:
        return next((slope, icpt) for start, slope, icpt in reversed(parts) if s >= start)

    px, py = pieces(cx, rw), pieces(cy, rh)
    starts = sorted({b for b, _, _ in px + py}) + [np.inf]
    for lo, hi in zip(starts[:-1], starts[1:]):
        (ax, bx), (ay, by) = linear(px, lo), linear(py, lo)
        a, b, c = ax * ay, ax * by + bx * ay, bx * by - area  # area(s) = a s² + b s + (c + area)
        if hi < np.inf and a * hi * hi + b * hi + c < 0:
            continue
        if a > 0:
            return (-b + np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
        return -c / b if b > 0 else lo
    raise ValueError(f"area {area} exceeds the frame")  # unreachable for area <= 224²


def place_object(rng: np.random.Generator, area: float) -> tuple[tuple, tuple]:
    """Place an object whose visible part has the given area: centre uniform, may be cut at the border.

    Args:
        rng: the clip's Generator.
        area: visible area in 224² px, in (0, 224²].

    Returns:
        (full, visible): the object's whole box and its box clipped to the frame (224 px).
    """
    cx, cy = rng.uniform(0.0, GRID, size=2)
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # width / height
    rw, rh = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
    s = _solve_scale(float(cx), float(cy), rw, rh, min(float(area), GRID * GRID))
    w, h = s * rw, s * rh
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), _clip_box(cx, cy, w, h)


def _overlap(a: tuple, b: tuple) -> float:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def place_apart(rng: np.random.Generator, area: float, taken: list[tuple], tries: int = 6) -> tuple[tuple, tuple]:
    """Place an object as `place_object`, keeping the candidate that overlaps the `taken` boxes least."""
    best, best_overlap = None, np.inf
    for _ in range(tries):
        full, visible = place_object(rng, area)
        overlap = sum(_overlap(visible, other) for other in taken)
        if overlap < best_overlap:
            best, best_overlap = (full, visible), overlap
    return best


def _rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(x) for x in colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_object(rng: np.random.Generator, spec: ClassSpec | None, full: tuple, visible: tuple) -> Placed:
    """Draw the appearance of one instance: of class `spec`, or a neutral distractor when None."""
    if spec is None:  # neutral: any shape/texture, unsaturated
        shape, texture = SHAPES[rng.integers(len(SHAPES))], TEXTURES[rng.integers(len(TEXTURES))]
        hue, sat, val = rng.uniform(0, 1), rng.uniform(0.0, 0.15), rng.uniform(0.25, 0.85)
    else:
        shape, texture = spec.shape, spec.texture
        hue, sat, val = spec.hue + rng.uniform(-0.025, 0.025), rng.uniform(0.6, 1.0), rng.uniform(0.65, 1.0)
    colour = _rgb(hue, sat, val)
    colour2 = _rgb(hue, sat * rng.uniform(0.5, 0.9), val * rng.uniform(0.35, 0.6))
    return Placed(full, visible, shape, colour, colour2, texture,
                  float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.0, 1.0)))


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test of a shape in object units (the shape's box is [-1, 1]², reached on both axes)."""
    au, av = np.abs(u), np.abs(v)
    inside_box = (au <= 1) & (av <= 1)
    if shape == "disk":
        return u * u + v * v <= 1
    if shape == "square":
        return inside_box
    if shape == "diamond":
        return au + av <= 1
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.45**2)
    if shape == "plus":
        return inside_box & ((au <= 0.33) | (av <= 0.33))
    if shape == "squircle":
        return u**4 + v**4 <= 1
    if shape == "frame":
        return inside_box & ((au >= 0.55) | (av >= 0.55))
    if shape == "astroid":
        return au**0.7 + av**0.7 <= 1  # a four-pointed star
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Texture pattern in {0, 1} (1: second colour) in object units."""
    a, b = np.floor((u + phase) / period), np.floor((v + phase) / period)
    if texture == "plain":
        return np.zeros_like(u, dtype=bool)
    if texture == "hstripes":
        return b % 2 == 1
    if texture == "vstripes":
        return a % 2 == 1
    if texture == "checker":
        return (a + b) % 2 == 1
    if texture == "diagonal":
        return np.floor((u + v + phase) / period) % 2 == 1
    if texture == "dots":
        du, dv = (u + phase) % period - period / 2, (v + phase) % period - period / 2
        return du * du + dv * dv <= (0.3 * period) ** 2
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


@functools.lru_cache(maxsize=4)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) of a size × size frame scaled to [0, 1), float32 (S, S) each."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return y, x


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient between two unsaturated colours + low-frequency waves + grey pixel noise. (S, S, 3) float32."""
    y, x = _unit_grid(size)
    angle = rng.uniform(0, 2 * np.pi)  # Python floats below keep the arrays float32
    ramp = ((x - 0.5) * float(np.cos(angle)) + (y - 0.5) * float(np.sin(angle))) / 2**0.5 + 0.5  # (S, S) in [0, 1]
    c1 = np.array(_rgb(rng.uniform(0, 1), rng.uniform(0, 0.35), rng.uniform(0.15, 0.95)), dtype=np.float32)
    c2 = np.array(_rgb(rng.uniform(0, 1), rng.uniform(0, 0.35), rng.uniform(0.15, 0.95)), dtype=np.float32)
    image = c1 + ramp[..., None] * (c2 - c1)  # (S, S, 3)
    for _ in range(3):  # low-frequency waves, grey or tinted
        fx, fy = (float(f) for f in rng.uniform(-4, 4, size=2))
        wave = np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))  # (S, S)
        image += (rng.uniform(0.0, 0.08) * rng.uniform(0.5, 1.0, size=3)).astype(np.float32) * wave[..., None]
    image += rng.standard_normal(size=(size, size, 1), dtype=np.float32) * np.float32(rng.uniform(0.005, 0.04))
    return image


def _paint(image: np.ndarray, obj: Placed, supersample: int = 2) -> None:
    """Alpha-blend one object into image (S, S, 3) in place, anti-aliased by supersampling."""
    size = image.shape[0]
    scale = size / GRID  # 224 px -> frame px
    x0, y0, x1, y1 = obj.visible
    c0, r0 = int(np.floor(x0 * scale)), int(np.floor(y0 * scale))
    c1, r1 = min(int(np.ceil(x1 * scale)), size), min(int(np.ceil(y1 * scale)), size)
    if c1 <= c0 or r1 <= r0:
        return
    n = supersample
    offsets = (np.arange(n) + 0.5) / n
    xs = ((np.arange(c0, c1)[:, None] + offsets[None, :]).ravel() / scale).astype(np.float32)  # (W*n,) 224 px
    ys = ((np.arange(r0, r1)[:, None] + offsets[None, :]).ravel() / scale).astype(np.float32)  # (H*n,)
    fx0, fy0, fx1, fy1 = obj.full
    u = (xs[None, :] - np.float32((fx0 + fx1) / 2)) / np.float32((fx1 - fx0) / 2)  # (1, W*n) object units
    v = (ys[:, None] - np.float32((fy0 + fy1) / 2)) / np.float32((fy1 - fy0) / 2)  # (H*n, 1)
    inside = _shape_mask(obj.shape, u, v)  # (H*n, W*n) by broadcasting
    pattern = _texture(obj.texture, u, v, obj.period, obj.phase)
    h, w = r1 - r0, c1 - c0
    lit = inside * (1.0 - 0.06 * (u + v))  # (H*n, W*n) coverage x shading, light from the top left
    alpha = inside.reshape(h, n, w, n).mean(axis=(1, 3))  # (H*n, W*n) -> (H, W)
    base = lit.reshape(h, n, w, n).mean(axis=(1, 3))  # (H, W) weight of the first colour
    dark = (lit * pattern).reshape(h, n, w, n).mean(axis=(1, 3))  # (H, W) weight of colour2 - colour
    first, second = np.asarray(obj.colour, np.float32), np.asarray(obj.colour2, np.float32)
    paint = base[..., None] * first + dark[..., None] * (second - first)  # (H, W, 3)
    region = image[r0:r1, c0:c1]
    region *= 1.0 - alpha[..., None]
    region += paint


def render_frame(rng: np.random.Generator, size: int, objects: list[Placed]) -> np.ndarray:
    """Draw a background and the objects in order (later ones on top).

    Args:
        rng: the clip's Generator (draws the background).
        size: frame side in px.
        objects: the objects, in drawing order.

    Returns:
        (size, size, 3) uint8 RGB frame.
    """
    image = _background(rng, size)
    for obj in objects:
        _paint(image, obj)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def synth_audio(rng: np.random.Generator, spec: ClassSpec, sample_rate: int, seconds: float) -> np.ndarray:
    """Synthesize one clip of a class: modulated harmonic tone + class noise band + background noise.

    Args:
        rng: the clip's Generator.
        spec: the class whose sound signature is drawn.
        sample_rate: Hz.
        seconds: clip length.

    Returns:
        (N,) int16 mono samples, N = round(sample_rate * seconds), peak between 30 % and 80 % of full scale.
    """
    n = int(round(sample_rate * seconds))
    t = np.arange(n, dtype=np.float32) / np.float32(sample_rate)  # (N,) seconds
    f0 = spec.f0 * np.exp(rng.uniform(-0.06, 0.06))
    vibrato = spec.fm_depth * rng.uniform(0.8, 1.2) * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 6.3))
    phase = np.cumsum(f0 * (1.0 + vibrato), dtype=np.float64) * (2 * np.pi / sample_rate)  # (N,) radians
    phase = (phase % (2 * np.pi)).astype(np.float32)  # wrapped, so that float32 sines stay exact enough
    tone = np.zeros(n, dtype=np.float32)
    for k in range(1, spec.harmonics + 1):
        if k * f0 * (1 + spec.fm_depth * 1.2) >= 0.45 * sample_rate:
            break
        offset = rng.uniform(0, 2 * np.pi)
        tone += np.float32(rng.uniform(0.7, 1.3) / k) * np.sin(k * phase + np.float32(offset))
    if spec.am_rate > 0:
        rate = spec.am_rate * rng.uniform(0.85, 1.15)
        tone *= 1.0 - 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    tone /= np.sqrt(np.mean(tone**2)) + 1e-12
    # Noise, shaped in the frequency domain: white floor + a Gaussian band around the class centre.
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)  # (N//2+1,)
    centre = spec.noise_centre * np.exp(rng.uniform(-0.05, 0.05))
    band = np.exp(-0.5 * ((freqs - centre) / 150.0) ** 2)  # (N//2+1,)
    band_level, floor_level = rng.uniform(0.2, 0.5), rng.uniform(0.02, 0.1)
    gain = band_level / np.sqrt(np.sum(band**2)) * band + floor_level / np.sqrt(len(freqs))
    spectrum = rng.standard_normal((2, len(freqs)))  # (2, F) real and imaginary parts
    noise = np.fft.irfft((spectrum[0] + 1j * spectrum[1]) * gain, n)  # (N,)
    noise *= np.hypot(band_level, floor_level) / (np.sqrt(np.mean(noise**2)) + 1e-12)
    signal = tone + noise
    signal *= rng.uniform(0.3, 0.8) / np.max(np.abs(signal))
    return np.round(signal * 32767).astype(np.int16)
