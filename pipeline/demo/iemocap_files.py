"""The IEMOCAP demo corpus's files besides audio and video: EmoEvaluation
blocks, transcriptions, `.wdseg` alignments, and the quirks that spoil a
transcription line or an utterance wav (see iemocap.py)."""
from __future__ import annotations

import os

import numpy as np

from .speech import FRAME, SAMPLE_RATE, resample, to_int16, write_wav

LABELLED = ("ang", "hap", "exc", "sad", "fru", "neu")
MS = SAMPLE_RATE // 1000
RATINGS_STREAM = 5      # the purpose number of the ratings' random stream (iemocap.py numbers the others)

# Annotator words for the codes, and the centre of each code's (valence,
# activation, dominance) ratings on IEMOCAP's 1..5 scales.
CATEGORY = {"neu": "Neutral", "hap": "Happiness", "exc": "Excited", "sad": "Sadness",
            "ang": "Anger", "fru": "Frustration", "fea": "Fear", "sur": "Surprise",
            "dis": "Disgust", "oth": "Other"}
DIMENSIONS = {"neu": (3, 2, 3), "hap": (4, 3, 3), "exc": (4.5, 4, 3.5), "sad": (1.5, 2, 2),
              "ang": (1.5, 4, 4), "fru": (2, 3.5, 3), "fea": (2, 4, 1.5), "sur": (3.5, 4, 3),
              "dis": (2, 3, 3.5), "oth": (3, 3, 3), "xxx": (2.5, 3, 3)}


def seconds(samples):
    return samples / SAMPLE_RATE


def evaluation(dialog, seed):
    blocks = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n"]
    blocks += [_evaluation_block(u, seed) for u in dialog.utterances]
    return "\n".join(blocks) + "\n"


def _evaluation_block(u, seed):
    """Header line, categorical lines (C-), then dimensional lines (A-); the
    actor's own evaluation is the C-F1/C-M1 and A-F1/A-M1 line."""
    evaluators, categories, ratings, (v, a, d) = annotation(u, seed)
    lines = [f"[{seconds(u.start):.4f} - {seconds(u.end):.4f}]\t{u.name}\t{u.code}\t"
             f"[{v:.4f}, {a:.4f}, {d:.4f}]"]
    lines += [f"C-E{e}:\t{'; '.join(cats)};\t()" for e, cats in zip(evaluators, categories)]
    lines.append(f"C-{u.gender}1:\t{CATEGORY.get(u.code, 'Other')};\t()")
    raters = [f"E{e}" for e in evaluators[:len(ratings) - 1]] + [f"{u.gender}1"]
    lines += [f"A-{who}:\tval {v}; act {a}; dom  {d};\t()" for who, (v, a, d) in zip(raters, ratings)]
    return "\n".join(lines) + "\n"


def annotation(u, seed):
    """The evaluators' opinions of one turn: evaluator numbers, their
    categories, the dimensional ratings (two evaluators, then the actor) and
    the header's V, A, D (the evaluators' mean)."""
    rng = np.random.default_rng([seed, RATINGS_STREAM, u.index])
    evaluators = sorted(int(e) for e in rng.choice(np.arange(1, 6), 3, replace=False))
    categories = _categories(u.code, rng)
    ratings = [np.clip(np.rint(np.array(DIMENSIONS[u.code]) + rng.normal(0, 0.6, 3)), 1, 5).astype(int)
               for _ in range(3)]
    vad = tuple(float(x) for x in np.mean(ratings[:2], axis=0))
    return evaluators, categories, ratings, vad


def _categories(code, rng):
    """Three evaluators' category lists: a majority for the code, or for xxx
    three different opinions (no agreement)."""
    if code == "xxx":
        picks = rng.choice(LABELLED, 3, replace=False)
        return [[CATEGORY[str(c)]] for c in picks]
    second = CATEGORY[str(rng.choice([c for c in LABELLED if c != code]))]
    return [[CATEGORY[code]], [CATEGORY[code]], [CATEGORY[code], second] if rng.random() < 0.4 else [CATEGORY[code]]]


def transcription(dialog):
    """Utterance lines in time order, plus two lines that are not utterances
    (an overlap marker named ...XX0, and a line without a time span); bytes,
    because one quirk writes a line in Windows-1252."""
    lines = []
    for u in dialog.utterances:
        if u.quirk == "missing_transcript":
            continue
        text, encoding = TEXT_QUIRKS.get(u.quirk, PLAIN_TEXT)
        line = f"{u.name} [{seconds(u.start):08.4f}-{seconds(u.end):08.4f}]: {text(u.transcript)}\n"
        lines.append((u.start, line.encode(encoding)))
    first = dialog.utterances[0]
    noise_at = first.end + 5 * MS
    other = "M" if first.gender == "F" else "F"
    marker = f"{dialog.name}_{other}XX0 [{seconds(noise_at):08.4f}-{seconds(noise_at + 200 * MS):08.4f}]: [LAUGHTER]\n"
    lines.append((noise_at, marker.encode()))
    lines.append((noise_at + 1, f"{other}: [BREATHING]\n".encode()))
    return b"".join(line for _, line in sorted(lines, key=lambda x: x[0]))


def _curly_quotes(text):
    return f"\u201c{text}\u201d"


# Quirks that change a transcription line: (text change, encoding of the line).
TEXT_QUIRKS = {"undecodable_transcript": (_curly_quotes, "cp1252")}
PLAIN_TEXT = (lambda text: text, "utf-8")


def wdseg(u, seed):
    """Sphinx-style segmentation in 10 ms frames: <s>, words with <sil> in the
    gaps, </s>; end frames inclusive; made-up acoustic scores."""
    rng = np.random.default_rng([seed, RATINGS_STREAM, u.index, 1])
    segments, frame = [], 0
    for (first, end), token in zip(u.spans, u.tokens):
        if first > frame:
            segments.append((frame, first - 1, "<s>" if frame == 0 else "<sil>"))
        segments.append((first, end - 1, token))
        frame = end
    segments.append((frame, u.length // FRAME - 1, "</s>"))
    rows, total = [" SFrm  EFrm    SegAScr Word"], 0
    for s, e, word in segments:
        score = -int(rng.integers(2000, 9000)) * (e - s + 1)
        total += score
        rows.append(f"{s:5d}{e:6d}{score:11d} {word}")
    rows.append(f" Total Score: {total:11d}")
    return "\n".join(rows) + "\n"


def _truncate(path):
    """Cut the file mid-sample, leaving the header's data size too large."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(44 + (size - 44) // 3 + 1)


def _empty(path):
    path.write_bytes(b"")


def _stereo_44k(path):
    import soundfile as sf
    samples, rate = sf.read(path, dtype="float32")
    upsampled = resample(samples, rate, 44100)
    write_wav(path, to_int16(np.stack([upsampled, 0.8 * upsampled], axis=1)), 44100)


# Quirks that spoil an utterance wav, applied after it is written.
WAV_QUIRKS = {
    "truncated_wav": _truncate,
    "zero_length_wav": _empty,
    "stereo_44k_wav": _stereo_44k,
    "missing_wav": os.remove,
}
