"""An IEMOCAP-layout demo corpus (the layout and its quirks: ../shared/CORPORA.md).

Five sessions, each with a female and a male speaker (distinct espeak-ng
voices), dialogs named as in the release (`Ses01F_impro01`,
`Ses01M_script01_1`, ...), one utterance wav per turn cut from the dialog wav,
EmoEvaluation blocks with annotator lines, transcriptions with bracketed
tokens and non-utterance lines, `.wdseg` word alignments and a dialog AVI.

Labels are learnable on purpose. Six codes (ang, hap, exc, sad, fru, neu) are
carried by the wording and the prosody (pitch, rate, loudness) together, by
the prosody alone (neutral wording), or by the words alone (neutral prosody),
in the ratio 2:1:1 per code; for neu the three coincide. About a tenth of the
items carry codes the usual label sets drop (xxx, oth, sur, fea, dis), spoken
neutrally. The truth file records every choice.

Everything random comes from numpy generators seeded with (seed, purpose,
index), so a seed gives the same bytes every time and one part's draws never
shift another's.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import DEMO_LAYOUTS, TRUTH_FILE, count as _count, prepare, size_spec
from .emotions import DEFAULT_NONSPEECH, NEUTRAL, NONSPEECH, PROSODY, sentence, tone
from .speech import SAMPLE_RATE, Synth, Voice, mix, words_of, write_wav
from . import video as vid
from .iemocap_files import (PLAIN_TEXT, TEXT_QUIRKS, WAV_QUIRKS, LABELLED, MS, annotation, evaluation,
                            seconds, transcription, wdseg)

VERSION = 2
SIZES = {"small": 4, "full": 50}            # utterances per speaker (full: enough for LOSO training)
SESSIONS = range(1, 6)
DROPPED = ("xxx", "oth", "sur", "fea", "dis")
DROPPED_SHARE = 0.1
CUES = ("both", "prosody", "both", "words")  # cycled: a quarter each prosody-only and words-only
VARIANTS = 6            # realisations per (speaker, code, cue); more utterances reuse their synthesis
UTTERANCES_PER_DIALOG = 10

# Session -> (female, male) speaker: espeak-ng voice and base pitch.
VOICES = {
    1: (("en+f1", 50), ("en+m1", 44)),
    2: (("en-us+f2", 54), ("en-us+m2", 48)),
    3: (("en+f3", 48), ("en+m3", 40)),
    4: (("en-us+f4", 56), ("en-us+m4", 46)),
    5: (("en+f5", 52), ("en+m7", 42)),
}

# Words the aligner writes with a pronunciation variant now and then.
VARIANT_WORDS = frozenset({"THE", "A", "TO", "WHAT", "YOU", "OF"})

# Purposes of the random streams (see the module docstring).
_CODES, _UTTERANCE, _REALISE, _DIALOG, _QUIRKS = range(5)   # RATINGS_STREAM is 5


@dataclass
class Utterance:
    index: int
    name: str
    dialog: str
    session: int
    gender: str                       # the speaker's: F or M
    code: str
    cue: str                          # both | prosody | words | none
    sentence: str                     # what is said, as the transcript writes it
    voice: Voice
    lead: int                         # frames of silence before the first word
    tail: int                         # frames after the last
    gap: int                          # frames between words
    tokens: tuple                     # the words as the .wdseg writes them
    tag: str | None = None            # bracketed token in the transcript, not spoken
    tag_first: bool = False
    quirk: str | None = None
    spans: list = field(default_factory=list)    # per word (first frame, end frame)
    length: int = 0                   # samples
    start: int = 0                    # first sample in the dialog

    @property
    def speaker(self):
        return f"Ses{self.session:02d}{self.gender}"

    @property
    def end(self):
        return self.start + self.length

    @property
    def transcript(self):
        if self.tag is None:
            return self.sentence
        return f"{self.tag} {self.sentence}" if self.tag_first else f"{self.sentence} {self.tag}"


@dataclass
class Dialog:
    name: str
    session: int
    index: int                        # within the session
    utterances: list
    length: int = 0                   # samples
    away: tuple = ()                  # (side, first frame, end frame) out of the picture


@DEMO_LAYOUTS.register("iemocap")
def make_iemocap(out, size="small", seed=0, utterances_per_speaker=None, video=True,
                 dialog_audio=True, quirks=False, workers=None) -> dict:
    """Write the corpus to `out` (the IEMOCAP_full_release folder) and return its truth.

    utterances_per_speaker overrides the size's count; video=False and
    dialog_audio=False skip the dialog AVIs and wavs (for fabricating large
    corpora fast); quirks=True adds the bad inputs listed in the truth file.
    """
    per_speaker = size_spec(SIZES, size)
    if utterances_per_speaker is not None:
        per_speaker = int(utterances_per_speaker)
    if per_speaker < 1:
        raise ValueError("utterances_per_speaker must be at least 1")
    out = prepare(out, r"Session\d+")
    dialogs = _plan(per_speaker, seed)
    utterances = [u for d in dialogs for u in d.utterances]
    bad = _pick_quirks(utterances, seed) if quirks else {}
    synth = Synth(workers)
    synth.prefetch((words_of(u.sentence), u.voice) for u in utterances)
    # Dialog by dialog, so memory holds the synthesised pool and one dialog per thread.
    with ThreadPoolExecutor(synth.workers) as pool:
        videos = pool.map(lambda d: _make_dialog(out, d, synth, seed, video, dialog_audio), dialogs)
        video_truth = dict(zip((d.name for d in dialogs), videos))
    truth = _truth(dialogs, video_truth, bad, seed, dict(size=size, utterances_per_speaker=per_speaker))
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    return truth


# ---------------------------------------------------------------- the plan

def _plan(per_speaker, seed):
    """Every dialog and utterance, with codes, cues, words and voices; no audio yet."""
    speakers = [(s, g) for s in SESSIONS for g in "FM"]
    codes = _codes(len(speakers) * per_speaker, np.random.default_rng([seed, _CODES]))
    cues = _cues(codes, np.random.default_rng([seed, _CODES, 1]))
    chunk = {spk: list(zip(codes[i::len(speakers)], cues[i::len(speakers)]))
             for i, spk in enumerate(speakers)}
    dialogs, index = [], 0
    for session in SESSIONS:
        names = _dialog_names(session, _dialog_count(per_speaker))
        shares = {g: np.array_split(np.arange(per_speaker), len(names)) for g in "FM"}
        for k, name in enumerate(names):
            turns = _turns(len(shares["F"][k]), len(shares["M"][k]), first="FM"[k % 2])
            utterances = []
            for gender, number in turns:
                code, cue = chunk[(session, gender)][shares[gender][k][number]]
                utterances.append(_utterance(index, name, session, gender, number, code, cue, seed))
                index += 1
            dialogs.append(Dialog(name, session, k, utterances))
    _add_suffix_letter(dialogs)
    return dialogs


def _codes(n, rng):
    """A shuffled list of n codes: a tenth (in whole rounds of the five dropped
    codes) dropped codes, the rest spread evenly over the six labelled ones."""
    n_dropped = min(len(DROPPED) * max(1, round(n * DROPPED_SHARE / len(DROPPED))), n // 2)
    n_labelled = n - n_dropped
    codes = [LABELLED[i % len(LABELLED)] for i in range(n_labelled)]
    codes += [DROPPED[i % len(DROPPED)] for i in range(n_dropped)]
    return [str(c) for c in rng.permutation(codes)]


def _cues(codes, rng):
    """Per item the cue that carries its code: CUES cycled through each code's
    items in turn, the cycle running on from one code to the next so that
    small corpora are balanced overall too."""
    cues = ["none"] * len(codes)
    k = 0
    for code in LABELLED:
        where = [i for i, c in enumerate(codes) if c == code]
        for i in rng.permutation(where):
            cues[i] = CUES[k % len(CUES)]
            k += 1
    return cues


def _dialog_count(per_speaker):
    return min(34, max(min(per_speaker, 2), -(-2 * per_speaker // UTTERANCES_PER_DIALOG)))


def _dialog_names(session, count):
    """Real IEMOCAP dialog names, alternating improvised and scripted and the
    actor wearing markers; sessions start at different scripts."""
    ses = f"Ses{session:02d}"
    impro = [f"{ses}{g}_impro{k:02d}" for k in range(1, 9) for g in "FM"]
    script = [f"{ses}{g}_script{k:02d}_{j}" for k in range(1, 4) for j in range(1, 4) for g in "MF"]
    shift = 4 * (session - 1) % len(script)
    script = script[shift:] + script[:shift]
    names = [n for pair in zip(impro, script) for n in pair] + script[len(impro):]
    if count > len(names):
        raise ValueError(f"at most {len(names)} dialogs per session")
    return names[:count]


def _turns(n_female, n_male, first):
    """Alternating turns [(gender, ordinal)], the rest of the longer side at the end."""
    order = [first, "M" if first == "F" else "F"]
    count = {"F": n_female, "M": n_male}
    turns = []
    for i in range(max(n_female, n_male)):
        turns += [(g, i) for g in order if i < count[g]]
    return turns


def _utterance(index, dialog, session, gender, number, code, cue, seed):
    rng = np.random.default_rng([seed, _UTTERANCE, index])
    variant = int(rng.integers(VARIANTS))
    sentence, voice = _realise(session, gender, code, cue, variant, seed)
    voice = replace(voice, amplitude=voice.amplitude + int(rng.integers(-8, 9)))
    spoken = words_of(sentence)
    tokens = tuple(f"{w}(2)" if w in VARIANT_WORDS and rng.random() < 0.5 else w
                   for w in (s.upper() for s in spoken))
    tag = NONSPEECH.get(code, DEFAULT_NONSPEECH) if rng.random() < 0.2 else None
    return Utterance(
        index=index, name=f"{dialog}_{gender}{number:03d}", dialog=dialog, session=session,
        gender=gender, code=code, cue=cue, sentence=sentence, voice=voice,
        lead=int(rng.integers(15, 35)), tail=int(rng.integers(10, 25)),
        gap=max(3, round(8 * PROSODY[NEUTRAL][1] / voice.rate)),
        tokens=tokens, tag=tag, tag_first=bool(rng.random() < 0.5))


def _realise(session, gender, code, cue, variant, seed):
    """Sentence and voice for one (speaker, code, cue, variant): the synthesis
    pool that repeats of the same variant share; each session speaks its
    own share of the lines."""
    rng = np.random.default_rng([seed, _REALISE, session, "FM".index(gender),
                                 _code_index(code), ("both", "prosody", "words", "none").index(cue), variant])
    word_code = code if cue in ("both", "words") else NEUTRAL
    tone_code = code if cue in ("both", "prosody") else NEUTRAL
    said = sentence(word_code, rng, SESSIONS.index(session), len(SESSIONS))
    name, base_pitch = VOICES[session]["FM".index(gender)]
    return said, tone(tone_code, name, base_pitch, rng)


def _code_index(code):
    return (LABELLED + DROPPED).index(code)


def _add_suffix_letter(dialogs):
    """IEMOCAP has turns such as Ses05F_script01_1_F011b: give session 5's
    first scripted dialog one, by naming its last female turn after the one before."""
    last = [d for d in dialogs if d.session == 5]
    dialog = next((d for d in last if "_script" in d.name), last[0])
    female = [u for u in dialog.utterances if u.gender == "F"]
    if female:
        u = female[-1]
        u.name = f"{dialog.name}_F{max(len(female) - 2, 0):03d}b"


def _pick_quirks(utterances, seed):
    """One utterance per bad-input kind, all different."""
    kinds = sorted(WAV_QUIRKS) + ["missing_transcript", "undecodable_transcript"]
    if len(utterances) < len(kinds):
        raise ValueError(f"quirks need at least {len(kinds)} utterances")
    rng = np.random.default_rng([seed, _QUIRKS])
    chosen = rng.choice(len(utterances), len(kinds), replace=False)
    for kind, i in zip(kinds, chosen):
        utterances[i].quirk = kind
    return {kind: utterances[i].name for kind, i in zip(kinds, chosen)}


# ---------------------------------------------------------------- audio

def _speak(u, synth):
    """The turn's samples; records its word spans and length."""
    samples, u.spans = synth.say(words_of(u.sentence), u.voice, u.gap, u.lead, u.tail)
    u.length = len(samples)
    return samples


def _lay_out(dialog, seed):
    """Place the turns on the dialog's time line (on a 10 ms grid, so every
    time written with four decimals is exact) and choose when a person steps
    out of the picture."""
    rng = np.random.default_rng([seed, _DIALOG, dialog.session, dialog.index])
    t = int(rng.integers(50, 100)) * 10 * MS
    for u in dialog.utterances:
        u.start = t
        t = u.end + int(rng.integers(25, 70)) * 10 * MS
    dialog.length = t
    frames = _frame_count(dialog.length)
    absent = min(int(rng.uniform(2.0, 3.0) * vid.FPS), frames // 3)
    first = int(rng.integers(frames // 3, frames - absent - frames // 6 + 1))
    dialog.away = (("left", "right")[dialog.index % 2], first, first + absent)


def _frame_count(samples):
    return int(np.ceil(samples / SAMPLE_RATE * vid.FPS))


def _dialog_signal(dialog, clips, seed):
    """The dialog's audio: a faint noise floor (so no two turns have the same
    bytes, even when they reuse a synthesis) with the turns added in."""
    rng = np.random.default_rng([seed, _DIALOG, dialog.session, dialog.index, 1])
    return mix(dialog.length, [(u.start, clip) for u, clip in zip(dialog.utterances, clips)], rng)


# ---------------------------------------------------------------- files

def _make_dialog(out, dialog, synth, seed, video, dialog_audio):
    """Speak, lay out and write one dialog; returns the video's truth (None without video)."""
    clips = [_speak(u, synth) for u in dialog.utterances]
    _lay_out(dialog, seed)
    session = out / f"Session{dialog.session}"
    paths = {key: session / sub for key, sub in _DIRS.items()}
    for key in ("evaluation", "transcription", "dialog_wav", "avi"):
        paths[key].mkdir(parents=True, exist_ok=True)
    for key in ("wav", "wdseg"):
        (paths[key] / dialog.name).mkdir(parents=True, exist_ok=True)
    (paths["evaluation"] / f"{dialog.name}.txt").write_text(evaluation(dialog, seed))
    (paths["transcription"] / f"{dialog.name}.txt").write_bytes(transcription(dialog))
    signal = _dialog_signal(dialog, clips, seed)
    if dialog_audio:
        write_wav(paths["dialog_wav"] / f"{dialog.name}.wav", signal)
    for u in dialog.utterances:
        (paths["wdseg"] / dialog.name / f"{u.name}.wdseg").write_text(wdseg(u, seed))
        wav = paths["wav"] / dialog.name / f"{u.name}.wav"
        write_wav(wav, signal[u.start:u.end])
        if u.quirk in WAV_QUIRKS:
            WAV_QUIRKS[u.quirk](wav)
    if not video:
        return None
    return _write_video(out, paths["avi"] / f"{dialog.name}.avi", dialog, seed)


_DIRS = {
    "evaluation": "dialog/EmoEvaluation",
    "transcription": "dialog/transcriptions",
    "dialog_wav": "dialog/wav",
    "avi": "dialog/avi/DivX",
    "wav": "sentences/wav",
    "wdseg": "sentences/ForcedAlignment",
}




def _write_video(out, path, dialog, seed):
    """The dialog AVI: the actor wearing markers on the left, the other on the right."""
    rng = np.random.default_rng([seed, _DIALOG, dialog.session, dialog.index, 2])
    side, first, end = dialog.away
    marker = dialog.name[5]
    speakers = {"left": marker, "right": "M" if marker == "F" else "F"}
    tracks = {}
    for person, (name, centre) in zip(vid.people(), (("left", 180), ("right", 540))):
        w, _ = person.size
        sway = (float(rng.uniform(3, 6)), float(rng.uniform(2, 4)), float(rng.uniform(3, 6)),
                float(rng.uniform(0, 2 * np.pi)))
        away = ((first, end),) if name == side else ()
        tracks[name] = vid.Track(person, centre - w // 2 + int(rng.integers(-20, 21)),
                                 int(rng.integers(100, 141)), sway, away)
    frames = _frame_count(dialog.length)
    vid.write_video(path, frames, list(tracks.values()))
    return {
        "path": _relative(path, out), "fps": vid.FPS, "frames": frames, "width": vid.WIDTH, "height": vid.HEIGHT,
        "fourcc": vid.FOURCC,
        "faces": {name: {
            "speaker": f"Ses{dialog.session:02d}{speakers[name]}",
            "face_box": list(t.face_box()),
            "sway_px": [round(t.sway[0], 3), round(t.sway[1], 3)],
            "in_view_frames": [list(s) for s in vid.in_view(frames, t.away)],
            "in_view": [[round(a / vid.FPS, 4), round(b / vid.FPS, 4)] for a, b in vid.in_view(frames, t.away)],
        } for name, t in tracks.items()},
    }


# ---------------------------------------------------------------- truth

def _truth(dialogs, videos, bad, seed, settings):
    from .. import labels
    utterances = [u for d in dialogs for u in d.utterances]
    items = {u.name: _item_truth(u, seed) for u in utterances}
    code_counts = _count(u.code for u in utterances)
    label_sets = {}
    for name in labels.set_names("iemocap"):
        mapping = labels.label_set("iemocap", name)
        label_sets[name] = _count(mapping[u.code] for u in utterances if u.code in mapping)
    return {
        "layout": "iemocap", "version": VERSION, "seed": seed, **settings,
        "sample_rate": SAMPLE_RATE,
        "items": items,
        "speakers": {f"Ses{s:02d}{g}": {"voice": VOICES[s]["FM".index(g)][0], "gender": g,
                                        "session": f"Ses{s:02d}",
                                        "items": sum(u.speaker == f"Ses{s:02d}{g}" for u in utterances)}
                     for s in SESSIONS for g in "FM"},
        "code_counts": code_counts,
        "label_sets": label_sets,
        "cue_counts": _count(u.cue for u in utterances),
        "dialogs": {d.name: {"session": f"Ses{d.session:02d}", "duration": seconds(d.length),
                             "utterances": [u.name for u in d.utterances],
                             "wav": f"Session{d.session}/{_DIRS['dialog_wav']}/{d.name}.wav",
                             "video": videos[d.name]}
                    for d in dialogs},
        "suffix_letter_items": [u.name for u in utterances if u.name[-1].isalpha()],
        "quirks": bad,
    }


def _item_truth(u, seed):
    """What a reader should find for the turn (text as the transcript has it,
    and without its bracketed token), and how it was made."""
    change = TEXT_QUIRKS.get(u.quirk, PLAIN_TEXT)[0]
    missing = u.quirk == "missing_transcript"
    return {
        "code": u.code, "cue": u.cue, "speaker": u.speaker, "session": f"Ses{u.session:02d}",
        "dialog": u.dialog, "start": seconds(u.start), "end": seconds(u.end),
        "text": None if missing else change(u.transcript),
        "text_clean": None if missing else change(u.sentence),
        "spoken": u.sentence,
        "words": [[tok, first / 100, end / 100] for tok, (first, end) in zip(u.tokens, u.spans)],
        "vad": list(annotation(u, seed)[3]),
        "voice": {"name": u.voice.name, "pitch": u.voice.pitch, "rate": u.voice.rate,
                  "amplitude": u.voice.amplitude},
        "wav": f"Session{u.session}/{_DIRS['wav']}/{u.dialog}/{u.name}.wav",
        "quirk": u.quirk,
    }


def _relative(path, out):
    return Path(path).relative_to(out).as_posix()
