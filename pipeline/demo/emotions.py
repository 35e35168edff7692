"""How a demo corpus expresses each emotion: what is said, and how.

Keyed by IEMOCAP's codes; other layouts map their own labels onto these
(the IEMOCAP demo speaks sur, fea and dis neutrally, as codes its label sets
drop; the MELD and Aff-Wild2 demos use their rows). The
two cues are kept apart on purpose: an item can carry its emotion in its
wording, in its prosody, or in both, and the neutral row is what an item uses
for the cue that must not give the label away.
"""

NEUTRAL = "neu"

# Sentences whose words carry the emotion (the neutral ones carry none).
WORDING = {
    "ang": (
        "Get out of my office right now!",
        "I am absolutely furious with you.",
        "This is completely outrageous!",
        "Stop lying to me, you idiot!",
        "How dare you speak to me like that?",
        "I hate you and your stupid rules.",
        "You ruined everything, damn it!",
        "Shut up and listen to me!",
    ),
    "hap": (
        "I'm so glad you came today.",
        "What a lovely thing to say.",
        "That makes me really happy.",
        "You look wonderful this evening.",
        "Thank you, this is perfect.",
        "I love spending time with you.",
        "It was such a beautiful day.",
        "We had a really nice time together.",
    ),
    "exc": (
        "Wow, we actually won the whole thing!",
        "I can't wait to go, this is huge!",
        "This is absolutely amazing!",
        "Oh my god, we got the house!",
        "Yes! I finally passed the exam!",
        "That's fantastic news, let's celebrate!",
        "I'm so excited about tomorrow!",
        "We are going to Hawaii!",
    ),
    "sad": (
        "I miss her so much.",
        "Nobody ever calls me anymore.",
        "Everything I loved is gone.",
        "I feel so lonely tonight.",
        "He passed away last week.",
        "I lost my job today.",
        "There is no hope left for us.",
        "I just want to cry.",
    ),
    "fru": (
        "Why does this never work?",
        "I have been waiting here for hours.",
        "This is the third time I asked.",
        "Nobody in this place helps me.",
        "I already filled out this form twice.",
        "Ugh, the line is not even moving.",
        "You keep sending me back here.",
        "Why is everything so complicated?",
    ),
    "sur": (
        "Wait, you did what?",
        "No way, is that really you?",
        "I did not see that coming at all!",
        "You got married? Since when?",
        "Really? Right here in this room?",
        "Oh! I had no idea you were back.",
        "What? Are you serious?",
        "How on earth did that happen?",
    ),
    "fea": (
        "Please, I'm scared, don't leave me here.",
        "Did you hear that noise outside?",
        "I think someone is following us.",
        "Oh no, what if they find out?",
        "I'm terrified of what comes next.",
        "Stay close, something is wrong here.",
        "I can't breathe, I'm so afraid.",
        "Don't open that door, please.",
    ),
    "dis": (
        "Ew, that is absolutely disgusting.",
        "Gross, get that thing away from me.",
        "That smells like rotten eggs.",
        "I can't believe you ate that, yuck.",
        "This place is filthy and revolting.",
        "Ugh, there's hair in my soup.",
        "That is the nastiest thing I ever saw.",
        "You are sick, that is so gross.",
    ),
    NEUTRAL: (
        "The office opens at nine.",
        "Please fill in this form.",
        "The train leaves at noon.",
        "My name should be on the list.",
        "I need a new license.",
        "The meeting is on Tuesday.",
        "We went to the store on Main Street.",
        "It is about three miles away.",
    ),
}

# Prosody per emotion: (pitch shift in espeak-ng's 0..99 scale, words per
# minute, loudness in espeak-ng's amplitude scale). Anger is the loudest and
# fastest but not high (so that, with hap and exc merged as most label sets do,
# it is not taken for excitement),
# sadness low, slow and soft; happy and excited are high, excited more so;
# surprise highest, fear high, fast and faint, disgust low and slow.
# Rates are espeak-ng's for words spoken one at a time, which come out slower
# than the same rate inside a sentence.
PROSODY = {
    "ang": (-4, 275, 200),
    "hap": (30, 200, 120),
    "exc": (42, 235, 140),
    "sad": (-26, 130, 45),
    "fru": (-12, 185, 165),
    "sur": (46, 225, 135),
    "fea": (32, 240, 60),
    "dis": (-18, 150, 115),
    NEUTRAL: (0, 175, 80),
}

# Bracketed non-speech tokens a transcript may carry (never spoken in the audio).
NONSPEECH = {"hap": "[LAUGHTER]", "exc": "[LAUGHTER]"}
DEFAULT_NONSPEECH = "[BREATHING]"


def tone(code, name, base_pitch, rng):
    """The espeak-ng Voice `name` speaking with `code`'s prosody around
    `base_pitch`, jittered by `rng` (a pitch step, then a rate step)."""
    import numpy as np
    from .speech import Voice
    shift, rate, amplitude = PROSODY[code]
    pitch = int(np.clip(base_pitch + shift + 4 * int(rng.integers(-1, 2)), 0, 99))
    return Voice(name, pitch, rate + 10 * int(rng.integers(-1, 2)), amplitude)


def sentence(code, rng):
    """One of `code`'s sentences, drawn with `rng`."""
    return WORDING[code][int(rng.integers(len(WORDING[code])))]
