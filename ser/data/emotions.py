"""The one emotion vocabulary that every corpus maps its labels into."""

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
        raise ValueError(f"unknown emotion(s) {unknown}; the shared vocabulary is {list(EMOTIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"data.emotions lists a class twice: {names}")
    if len(names) < 2:
        raise ValueError(f"need at least two emotions to classify, got {names}")
    return names
