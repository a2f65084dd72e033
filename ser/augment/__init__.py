"""Training-only augmentation: on the waveform before the front end (the channel: rooms,
microphones, noise) and on the features after it (gain, SpecAugment, VTLP, speed, mixup)."""

from ser.augment.channel import ChannelAugment
from ser.augment.features import Augment, read_at

__all__ = ["Augment", "ChannelAugment", "read_at"]
