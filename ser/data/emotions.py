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
)


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
