"""Dialog videos for demo corpora: two people side by side, 720x480, ~29.97 fps.

The people are a real photograph shipped with scikit-image (the astronaut),
cut to head and shoulders with a soft oval edge; the second person is the same
photo mirrored and tinted so the two halves differ. Each sways a few pixels
and can step out of the picture for given frame ranges, which a test can
compare face detections against, and can change its look (an expression,
see `warped`) for given frame ranges. Frames are composed and written one at
a time: a video is never held in memory. `write_clip` adds a sound track.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 720, 480
FPS = 30000 / 1001                   # NTSC rate, as IEMOCAP's recordings
FOURCC = "DX50"                      # DivX 5 (MPEG-4 part 2), as in IEMOCAP's avi/DivX

# The astronaut photo: the face (as OpenCV's frontal Haar cascade finds it)
# and a head-and-shoulders crop around it, in the photo's pixels.
_PHOTO_FACE = (177, 66, 95, 95)
_PHOTO_CROP = (100, 5, 360, 330)     # x0, y0, x1, y1


@dataclass(frozen=True, eq=False)          # compared by identity: the arrays have no single truth value
class Person:
    image: np.ndarray                # (h, w, 3) float32, BGR
    alpha: np.ndarray                # (h, w, 1) float32 in [0, 1]
    face: tuple                      # face box (x, y, w, h) inside the image

    @property
    def size(self):
        return self.image.shape[1], self.image.shape[0]


@dataclass(frozen=True)
class Track:
    """One person in one video: resting top-left corner, sway, absences."""
    person: Person
    x: int
    y: int
    sway: tuple = (5.0, 3.0, 4.0, 0.0)      # x and y amplitude (px), period (s), phase (rad)
    away: tuple = ()                        # (first frame, end frame) ranges out of the picture
    looks: tuple = ()                       # (first frame, end frame, Person) ranges showing another look

    def look(self, frame):
        """The person as shown in this frame (an expression's look, or the plain one)."""
        return next((p for a, b, p in self.looks if a <= frame < b), self.person)

    def position(self, frame, fps=FPS):
        ax, ay, period, phase = self.sway
        angle = 2 * np.pi * frame / (fps * period) + phase
        return self.x + int(round(ax * np.sin(angle))), self.y + int(round(ay * np.sin(2 * angle)))

    def present(self, frame):
        return not any(a <= frame < b for a, b in self.away)

    def face_box(self):
        """The face box (x, y, w, h) in the frame at rest; sway moves it by up
        to the sway amplitudes."""
        fx, fy, fw, fh = self.person.face
        return self.x + fx, self.y + fy, fw, fh


@lru_cache(maxsize=None)
def people(face_widths=(72, 64)):
    """The two people, their faces `face_widths` pixels wide."""
    try:
        from skimage import data
    except ImportError:     # scikit-image is the `demo` extra: only demo corpora need it
        raise ValueError("demo corpora with video need scikit-image (its sample photo): "
                         "pip install 'emocache[demo]'") from None
    photo = data.astronaut()[:, :, ::-1].astype(np.float32)          # RGB -> BGR
    x0, y0, x1, y1 = _PHOTO_CROP
    crop = photo[y0:y1, x0:x1]
    tint = np.array([0.8, 0.95, 1.15], np.float32)                   # BGR gains: a warmer cast
    left = _person(crop, face_widths[0])
    right_image = np.clip(crop[:, ::-1] * tint, 0, 255)
    right = _person(right_image, face_widths[1], mirrored=True)
    return left, right


def _person(crop, face_width, mirrored=False):
    import cv2
    fx, fy, fw, fh = _PHOTO_FACE
    scale = face_width / fw
    h, w = crop.shape[:2]
    size = (int(round(w * scale)), int(round(h * scale)))
    image = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_AREA)
    x = (w - (fx - _PHOTO_CROP[0]) - fw) if mirrored else (fx - _PHOTO_CROP[0])
    face = (int(round(x * scale)), int(round((fy - _PHOTO_CROP[1]) * scale)),
            int(round(fw * scale)), int(round(fh * scale)))
    return Person(image, _oval_mask(size), face)


def warped(person, stretch=1.0, shear=0.0):
    """The person with the face stretched vertically by `stretch` and sheared
    (x shifted by `shear` times the height above or below the face centre),
    both about the face centre: a change of face shape that survives the
    face stage's normalisation (position, roll and eye distance removed)."""
    import cv2
    fx, fy, fw, fh = person.face
    cy = fy + fh / 2
    m = np.array([[1.0, shear, -shear * cy], [0.0, stretch, cy * (1 - stretch)]], np.float32)
    w, h = person.size
    image = cv2.warpAffine(person.image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(person.alpha[:, :, 0], m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)[:, :, None]
    face = (fx, int(round(cy - fh * stretch / 2)), fw, int(round(fh * stretch)))
    return Person(image, alpha, face)


def _oval_mask(size):
    """A soft-edged oval filling the image, so no rectangle edge shows."""
    import cv2
    w, h = size
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2 + h // 8), (w // 2 - 6, h // 2 + h // 8 - 6), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 4)
    return mask[:, :, None]


@lru_cache(maxsize=None)
def _background():
    """A plain studio wall: a vertical gradient with a darker floor band."""
    rows = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    wall = np.array([120, 110, 95], np.float32) * (1 - rows) + np.array([80, 75, 70], np.float32) * rows
    image = np.repeat(wall[:, None, :], WIDTH, axis=1)
    image[int(HEIGHT * 0.82):] *= 0.6
    image = image.astype(np.uint8)
    image.setflags(write=False)          # shared by every frame: copy, never draw on it
    return image


def write_video(path, n_frames, tracks, fps=FPS, fourcc=FOURCC):
    """Write `n_frames` frames showing `tracks` to an AVI at `path`."""
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {path}")
    try:
        layout, image = None, None
        for frame in range(n_frames):
            # People move by whole pixels, a few times a second: most frames
            # repeat the previous picture, which need not be drawn again.
            now = _layout(frame, tracks, fps)
            if now != layout:
                layout, image = now, _compose(now)
            writer.write(image)
    finally:
        writer.release()


def write_clip(path, n_frames, tracks, samples, rate, fps=FPS):
    """A video file with sound: the frames (as write_video) and int16 mono
    `samples` at `rate` Hz, muxed by ffmpeg. The container follows the
    suffix: .mp4 (MPEG-4 video, AAC audio) or .avi (MPEG-4 video, PCM audio)."""
    import subprocess
    import tempfile
    from .speech import write_wav
    path = Path(path)
    audio_codec = {".mp4": "aac", ".avi": "pcm_s16le"}[path.suffix.lower()]
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        silent, wav = Path(tmp) / f"video{path.suffix}", Path(tmp) / "audio.wav"
        write_video(silent, n_frames, tracks, fps, fourcc="mp4v" if path.suffix.lower() == ".mp4" else FOURCC)
        write_wav(wav, samples, rate)
        command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(silent), "-i", str(wav),
                   "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", audio_codec, str(path)]
        result = subprocess.run(command, capture_output=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg could not mux {path}: {result.stderr.decode(errors='replace').strip()}")


def _layout(frame, tracks, fps):
    """Who is where in this frame: ((person, x, y), ...) for those present."""
    return tuple((t.look(frame), *t.position(frame, fps)) for t in tracks if t.present(frame))


def _compose(layout):
    canvas = _background().copy()
    for person, x, y in layout:
        _paste(canvas, person, x, y)
    return canvas


def _paste(canvas, person, x, y):
    """Alpha-blend the person onto the canvas, clipped to the frame."""
    w, h = person.size
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)
    if x0 >= x1 or y0 >= y1:
        return
    image = person.image[y0 - y:y1 - y, x0 - x:x1 - x]
    alpha = person.alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region + alpha * (image - region)).astype(np.uint8)


def in_view(n_frames, away):
    """The frame ranges [first, end) in which a person with absences `away` is shown."""
    spans, start = [], 0
    for a, b in sorted(away):
        if a > start:
            spans.append((start, a))
        start = max(start, b)
    if start < n_frames:
        spans.append((start, n_frames))
    return spans
