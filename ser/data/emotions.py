"""The one emotion vocabulary that every corpus maps its labels into."""

from ser.errors import ConfigError

EMOTIONS = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "calm",
    "boredom",
    "contempt",  # MSP-Podcast (C)
    "frustration",  # IEMOCAP (fru)
    "excitement",  # IEMOCAP (exc), when it is not merged into happiness
)
# Emotion attributes (dimensions), in this order wherever they travel together, each mapped
# from its corpus's scale (IEMOCAP 1-5, MSP-Podcast 1-7) to [0, 1].
ATTRIBUTES = ("arousal", "valence", "dominance")


def check_emotions(names) -> list[str]:
    """Validate a user's ``data.emotions`` list against the shared vocabulary."""
    names = list(names)
    unknown = [n for n in names if n not in EMOTIONS]
    if unknown:
        raise ConfigError(f"data.emotions has unknown emotion(s) {unknown}; use names of the shared "
                          f"vocabulary: {', '.join(EMOTIONS)}.")
    if len(set(names)) != len(names):
        raise ConfigError(f"data.emotions lists a class twice: {names}")
    if len(names) < 2:
        raise ConfigError(f"data.emotions={names}: need at least two emotions to classify.")
    return names
