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
# The rows of IEMOCAP's label sets have fifteen lines, which a demo with five
# sessions splits three to a session (`sentence`'s `part`): a held-out
# session's lines were never heard in training, so a speech model cannot
# recognise them by their sound, while a few emotion words (angry, furious,
# glad, miss, ...) recur across sessions for a text model to learn.
WORDING = {
    "ang": (
        "I am so angry with you right now!",
        "You make me furious every single day.",
        "Don't make me mad, I'm warning you!",
        "I'm furious, you broke my car!",
        "I get so angry when you lie to me!",
        "Stop it, I am really mad at you!",
        "I'm angry, you never listen to me!",
        "This makes me absolutely furious!",
        "You are driving me mad, get out!",
        "I'm so furious I could scream!",
        "I am angry about the way you talk to me!",
        "Mad? I am beyond mad, I'm furious!",
        "How dare you, I'm so angry!",
        "I'm furious that you took my money!",
        "You idiot, I'm really angry now!",
    ),
    "hap": (
        "I'm so happy you came today.",
        "I'm really glad we met.",
        "I love spending time with you.",
        "This makes me so happy.",
        "I'm glad everything worked out.",
        "I love this lovely little garden.",
        "You always make me happy.",
        "I am so glad you called me.",
        "I love how you smile.",
        "What a happy day this is.",
        "I'm glad you liked the gift.",
        "I love you, and I'm so happy.",
        "We are happy together.",
        "I'm glad to see you again.",
        "I love our lovely evenings together.",
    ),
    "exc": (
        "Wow, I'm so excited, we won!",
        "This is amazing, I can't wait!",
        "I'm so excited about tomorrow!",
        "Wow, that's amazing news!",
        "I can't wait, this is so exciting!",
        "We got the house, I'm so excited!",
        "Amazing, I passed the exam!",
        "Wow, we are going to Hawaii!",
        "I'm excited, she said yes!",
        "This is amazing, let's celebrate!",
        "Wow, I got the job!",
        "I can't wait for the concert, how exciting!",
        "I'm so excited I can't sleep!",
        "That is absolutely amazing!",
        "Wow, we made it to the finals!",
    ),
    "sad": (
        "I miss her so much.",
        "I feel so sad and lonely tonight.",
        "I just want to cry.",
        "I'm so sad he is gone.",
        "I miss my old friends.",
        "I feel lonely without you.",
        "I cried all night.",
        "It is so sad, we lost everything.",
        "I miss the way things were.",
        "Nobody calls me, I'm so lonely.",
        "I'm sad, my dog died.",
        "I can't stop crying about it.",
        "I miss him every single day.",
        "I'm lonely and sad.",
        "She left me and I cried.",
    ),
    "fru": (
        "Why does this never work?",
        "I have been waiting here for hours.",
        "This is so frustrating, again!",
        "I asked three times already.",
        "It never works, I'm frustrated.",
        "I've been waiting all day for this.",
        "Ugh, again? This is so frustrating.",
        "Why do I always have to wait?",
        "This printer never works, again.",
        "I'm frustrated, nobody helps me.",
        "The line is not moving, I've been waiting forever.",
        "It broke again, how frustrating.",
        "You keep sending me back here again.",
        "I'm so frustrated with this paperwork.",
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
        "The train leaves at noon.",
        "My name should be on the list.",
        "The meeting is on Tuesday.",
        "We went to the store on Main Street.",
        "It is about three miles away.",
        "The bus stop is on the corner.",
        "Your appointment is at ten.",
        "The keys are on the table.",
        "I will be at the library.",
        "The report has three pages.",
        "Turn left after the bank.",
        "The package arrives on Friday.",
        "The library closes at six.",
        "I need a new license.",
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


def sentence(code, rng, part=0, parts=1):
    """One of `code`'s sentences, drawn with `rng` from share `part` of
    `parts` (every `parts`-th line, from line `part`)."""
    lines = WORDING[code][part::parts]
    return lines[int(rng.integers(len(lines)))]
