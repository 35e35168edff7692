"""A MELD-layout demo corpus (the layout and its quirks: ../shared/CORPORA.md).

Dialogues between two of six characters (each an espeak-ng voice), one MP4
clip per utterance (both people in the picture, the utterance's speech as
the sound track, ~23.976 fps), listed in `train_sent_emo.csv`,
`dev_sent_emo.csv` and `test_sent_emo.csv` with MELD's columns.

Labels are learnable on purpose: each utterance's emotion is carried by its
wording and its prosody together (pipeline/demo/emotions.py rows); the
sentiment follows the emotion (surprise is annotated positive or negative,
as in MELD, and then only the words can tell).

Quirks (named in the truth file): rows whose curly quotes, dashes and
ellipses are Windows-1252 bytes inside otherwise UTF-8 text (one of them also
holding a valid UTF-8 accented letter that must survive), quoted fields with
commas, and one listed clip missing from its folder (dev, as in the release).
"""
from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import DEMO_LAYOUTS, TRUTH_FILE, count, prepare, size_spec
from . import video as vid
from .emotions import sentence, tone
from .speech import SAMPLE_RATE, Synth, mix, words_of
from ..corpora.meld import COLUMNS, SPLITS

VERSION = 1
FPS = 24000 / 1001
SIZES = {"small": {"train": 2, "dev": 1, "test": 1}, "full": {"train": 40, "dev": 8, "test": 12}}
UTTERANCES = {"small": (3, 3), "full": (4, 6)}        # per dialogue: [low, high]
# MELD emotion -> the emotions.py row that speaks it.
SPOKEN = {"neutral": "neu", "joy": "hap", "surprise": "sur", "anger": "ang", "sadness": "sad",
          "disgust": "dis", "fear": "fea"}
SENTIMENT = {"neutral": "neutral", "joy": "positive", "anger": "negative", "sadness": "negative",
             "disgust": "negative", "fear": "negative"}          # surprise: either, drawn per utterance
CHARACTERS = {"Chandler": ("en+m1", 44), "Joey": ("en-us+m2", 40), "Ross": ("en+m3", 48),
              "Monica": ("en+f1", 52), "Rachel": ("en-us+f2", 56), "Phoebe": ("en+f3", 60)}
# Punctuation MELD's CSVs hold as Windows-1252 bytes, and what the text uses it for.
CP1252_PUNCTUATION = ("\u2019", "\u201c", "\u201d", "\u2014", "\u2026")

_DIALOGUE, _UTTERANCE, _VIDEO, _QUIRKS = range(4)


@dataclass
class Utterance:
    split: str
    dialogue: int
    number: int
    speaker: str
    emotion: str
    sentiment: str
    text: str
    voice: object
    season: int
    episode: int
    start: float                      # seconds into the episode
    cp1252: bool = False              # the row's punctuation written as Windows-1252 bytes
    missing_clip: bool = False
    length: int = 0                   # samples of the clip

    @property
    def id(self):
        return f"{self.split}_dia{self.dialogue}_utt{self.number}"

    @property
    def clip(self):
        return f"{SPLITS[self.split][1]}/dia{self.dialogue}_utt{self.number}.mp4"


@DEMO_LAYOUTS.register("meld")
def make_meld(out, size="small", seed=0, workers=None) -> dict:
    """Write the corpus to `out` (the MELD.Raw folder) and return its truth."""
    dialogues = size_spec(SIZES, size)
    out = prepare(out, "|".join([t for t, _ in SPLITS.values()] + [f for _, f in SPLITS.values()]))
    utterances = [u for split, n in dialogues.items() for d in range(n)
                  for u in _dialogue(split, d, UTTERANCES[size], seed)]
    quirks = _quirks(utterances, seed)
    synth = Synth(workers)
    synth.prefetch((words_of(u.text), u.voice) for u in utterances)
    for _, folder in SPLITS.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(synth.workers) as pool:
        list(pool.map(lambda u: _write_clip(out, u, synth, seed), utterances))
    for split, (table, _) in SPLITS.items():
        (out / table).write_bytes(_table([u for u in utterances if u.split == split]))
    truth = _truth(utterances, quirks, seed, size)
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


def _dialogue(split, number, length_range, seed):
    rng = np.random.default_rng([seed, _DIALOGUE, list(SPLITS).index(split), number])
    pair = [str(x) for x in rng.choice(list(CHARACTERS), 2, replace=False)]
    n = int(rng.integers(length_range[0], length_range[1] + 1))
    season, episode = int(rng.integers(1, 11)), int(rng.integers(1, 25))
    t = float(rng.uniform(30, 1200))
    out = []
    for k in range(n):
        urng = np.random.default_rng([seed, _UTTERANCE, list(SPLITS).index(split), number, k])
        emotion = _emotion(urng)
        sentiment = SENTIMENT.get(emotion) or str(urng.choice(["positive", "negative"]))
        speaker = pair[k % 2]
        name, pitch = CHARACTERS[speaker]
        code = SPOKEN[emotion]
        out.append(Utterance(split, number, k, speaker, emotion, sentiment, _with_punctuation(sentence(code, urng), urng),
                             tone(code, name, pitch, urng), season, episode, round(t, 3)))
        t += float(urng.uniform(2, 6))
    return out


def _emotion(rng):
    """Neutral twice as often as each other emotion (MELD is mostly neutral)."""
    choices = ["neutral"] + list(SPOKEN)
    return choices[int(rng.integers(len(choices)))]


def _with_punctuation(text, rng):
    """The sentence as subtitles write it: apostrophes curly, now and then an
    ellipsis or a dash; some quote a word."""
    text = text.replace("'", "\u2019")
    roll = rng.random()
    if roll < 0.25:
        text = text.rstrip(".!?") + "\u2026"
    elif roll < 0.4:
        text = "Well \u2014 " + text[0].lower() + text[1:]
    elif roll < 0.5:
        text = f"\u201cOkay,\u201d {text[0].lower() + text[1:]}"
    return text


def _quirks(utterances, seed):
    """Rows written with cp1252 punctuation (every row with such punctuation
    in about half the dialogues), one of them with a UTF-8 accent too, and
    the missing dev clip."""
    rng = np.random.default_rng([seed, _QUIRKS])
    for u in utterances:
        u.cp1252 = any(c in u.text for c in CP1252_PUNCTUATION) and (u.dialogue + u.number) % 2 == 0
    marked = [u for u in utterances if u.cp1252]
    accented = marked[int(rng.integers(len(marked)))] if marked else None
    if accented is not None:
        accented.text = "Caf\u00e9 talk: " + accented.text
    dev = [u for u in utterances if u.split == "dev"]
    missing = dev[int(rng.integers(len(dev)))]
    missing.missing_clip = True
    return {"missing_clip": missing.id, "cp1252_rows": sorted(u.id for u in marked),
            "utf8_and_cp1252_row": accented.id if accented else None}


def _write_clip(out, u, synth, seed):
    rng = np.random.default_rng([seed, _VIDEO, list(SPLITS).index(u.split), u.dialogue, u.number])
    clip, _ = synth.say(words_of(u.text), u.voice, 6, int(rng.integers(10, 25)), int(rng.integers(10, 25)))
    u.length = len(clip)
    if u.missing_clip:
        return
    samples = mix(len(clip), [(0, clip)], rng)
    tracks = [vid.Track(person, x + int(rng.integers(-15, 16)), int(rng.integers(100, 140)),
                        (float(rng.uniform(3, 6)), float(rng.uniform(2, 4)), float(rng.uniform(3, 6)), 0.0))
              for person, x in zip(vid.people(), (90, 430))]
    vid.write_clip(out / u.clip, int(np.ceil(len(clip) / SAMPLE_RATE * FPS)), tracks, samples, SAMPLE_RATE, FPS)


def _table(utterances) -> bytes:
    """The CSV as MELD ships it: UTF-8, except that rows marked cp1252 hold
    their curly punctuation as single Windows-1252 bytes."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    data = [out.getvalue().encode()]
    for k, u in enumerate(utterances, start=1):
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerow(
            [k, u.text, u.speaker, u.emotion, u.sentiment, u.dialogue, u.number, u.season, u.episode,
             _timestamp(u.start), _timestamp(u.start + u.length / SAMPLE_RATE)])
        row = out.getvalue().encode()
        if u.cp1252:
            for c in CP1252_PUNCTUATION:
                row = row.replace(c.encode(), c.encode("cp1252"))
        data.append(row)
    return b"".join(data)


def _timestamp(seconds):
    """MELD's `hh:mm:ss,mmm`."""
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def _truth(utterances, quirks, seed, size):
    items = {u.id: {"split": u.split, "dialogue": u.dialogue, "utterance": u.number, "speaker": u.speaker,
                    "emotion": u.emotion, "sentiment": u.sentiment, "text": u.text, "clip": u.clip,
                    "cp1252": u.cp1252, "missing_clip": u.missing_clip,
                    "voice": {"name": u.voice.name, "pitch": u.voice.pitch, "rate": u.voice.rate,
                              "amplitude": u.voice.amplitude}}
             for u in utterances}
    return {
        "layout": "meld", "version": VERSION, "seed": seed, "size": size, "fps": FPS,
        "sample_rate": SAMPLE_RATE,
        "items": items,
        "split_counts": count(u.split for u in utterances),
        "emotion_counts": count(u.emotion for u in utterances),
        "sentiment_counts": count(u.sentiment for u in utterances),
        "quirks": quirks,
    }
