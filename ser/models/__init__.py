"""One file per architecture; each maps ``features[B, F, T], lengths[B] -> logits[B, C]``."""
