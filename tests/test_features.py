from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.transforms as T
from hypothesis import given, settings
from hypothesis import strategies as st

from ser.augment import Augment
from ser.frontends.spectral import FeatureFrontend


def test_features_of_a_clip_do_not_depend_on_batch_padding():
    front = FeatureFrontend()
    short, long = torch.randn(1, 20000), torch.randn(1, 40000)
    alone, frames_alone = front(short, torch.tensor([20000]))
    batch = torch.zeros(2, 40000)
    batch[0, :20000], batch[1] = short[0], long[0]
    padded, frames = front(batch, torch.tensor([20000, 40000]))
    n = int(frames_alone[0])
    assert int(frames[0]) == n == 1 + (20000 - 2048) // 512
    assert torch.allclose(alone[0, :, :n], padded[0, :, :n], atol=1e-4)
    assert (padded[0, :, n:] == 0).all()


def test_silence_and_mfcc_stay_finite():
    for kind in ("logmel", "mfcc"):
        front = FeatureFrontend(kind=kind)
        feats, _ = front(torch.zeros(2, 16000), torch.tensor([16000, 8000]))
        assert torch.isfinite(feats).all()
        assert feats.shape[1] == (128 if kind == "logmel" else 40)


def test_utterance_normalisation_removes_gain():
    front = FeatureFrontend()
    x = torch.randn(1, 30000)
    a, _ = front(x, torch.tensor([30000]))
    b, _ = front(x * 0.05, torch.tensor([30000]))
    assert torch.allclose(a, b, atol=1e-3)


def test_spec_augment_masks_one_band_and_one_span_inside_real_frames():
    torch.manual_seed(0)
    aug = Augment(freq_mask=10, time_mask=5, p=1.0)
    frames = torch.tensor([50, 30, 20, 10] * 50)
    out, _ = aug.features(torch.ones(len(frames), 128, 50), frames)
    for clip, n in zip(out, frames.tolist()):
        assert (clip[:, n:] == 0).all()  # padding stays zero
        real = clip[:, :n]
        masked_bins = (real == 0).all(dim=1).nonzero().flatten()
        masked_frames = (real == 0).all(dim=0).nonzero().flatten()
        for span, widest in ((masked_bins, 10), (masked_frames, 5)):  # one contiguous span each
            assert len(span) <= widest
            if len(span):
                assert span[-1] - span[0] + 1 == len(span)
        # everything else is untouched
        assert real.sum() == (128 - len(masked_bins)) * (n - len(masked_frames))


def test_spec_augment_masks_short_clips_in_a_long_batch_as_often_as_long_ones():
    torch.manual_seed(0)
    aug = Augment(freq_mask=0, time_mask=35, p=0.5)
    frames = torch.tensor([12, 400] * 4000)
    out, _ = aug.features(torch.ones(len(frames), 2, 400), frames)
    masked = (out[:, 0] == 0) & (torch.arange(400) < frames[:, None])  # masked real frames
    hit = masked.any(dim=1).float()
    expected = 0.5 * 35 / 36  # applied with p, and a width of 0 is drawn 1 time in 36
    assert abs(hit[0::2].mean() - expected) < 0.03 and abs(hit[1::2].mean() - expected) < 0.03
    widths = masked.sum(dim=1).float()
    assert abs(widths[1::2][widths[1::2] > 0].mean() - 18) < 1.0  # uniform in 1..35
    assert widths[0::2].max() == 11  # a span never leaves the clip, nor covers all of it


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 80), min_size=1, max_size=12), st.integers(1, 90), st.integers(0, 40),
       st.integers(0, 40), st.integers(1, 3))
def test_spec_augment_never_masks_all_of_a_clips_frames_or_bins(frames, bins, time_mask, freq_mask, masks):
    """Whatever the clips' lengths, the features' height and the mask widths: every clip keeps a
    real frame and a bin unmasked (so a clip of one frame, eGeMAPS functionals, keeps its frame)."""
    aug = Augment(freq_mask=freq_mask, time_mask=time_mask, num_masks=masks, p=1.0)
    frames = torch.tensor(frames)
    out, _ = aug.features(torch.ones(len(frames), bins, int(frames.max())), frames)
    for clip, n in zip(out, frames.tolist()):
        real = clip[:, :n]
        assert (real != 0).any(dim=0).sum() >= 1 and (real != 0).any(dim=1).sum() >= 1


def test_spec_augment_with_p_zero_only_zeroes_padding():
    aug = Augment(p=0.0)
    feats, frames = torch.randn(3, 128, 40), torch.tensor([40, 25, 7])
    out, _ = aug.features(feats, frames)
    torch.testing.assert_close(out, feats * (torch.arange(40) < frames[:, None])[:, None, :])


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_front_end_computes_what_torchaudio_computes(kind):
    waves = torch.randn(3, 16000)
    mel = dict(n_fft=512, hop_length=160, n_mels=40, center=False)
    if kind == "logmel":
        expected = torch.log(T.MelSpectrogram(16000, **mel)(waves) + 1e-6)
    else:
        expected = T.MFCC(16000, n_mfcc=13, log_mels=True, melkwargs=mel)(waves)
    frontend = FeatureFrontend(kind, n_fft=512, hop_length=160, n_mels=40, n_mfcc=13, normalize="none")
    feats, frames = frontend(waves, torch.full((3,), 16000))
    assert feats.shape == expected.shape and frames.tolist() == [expected.shape[-1]] * 3
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=1e-4)


@settings(max_examples=40, deadline=None)
@given(n_fft=st.integers(16, 2048), hop_fraction=st.floats(0.05, 1.0), n_mels=st.integers(8, 128),
       batch=st.integers(1, 4), extra=st.integers(0, 3000), seed=st.integers(0, 2**16))
def test_the_exports_matmul_mel_power_is_torchs_for_any_window_and_hop(n_fft, hop_fraction, n_mels, batch, extra, seed):
    """What an export computes (MatmulMelPower: Cooley-Tukey in MatMuls, any N, prime included) is
    what the checkpoint's torch.stft and MelScale compute, to float32 rounding, for any window and
    hop, batch and length (one frame to many)."""
    import warnings

    hop = max(1, int(n_fft * hop_fraction))
    with warnings.catch_warnings():  # an empty mel filter at a small n_fft is torchaudio's note, not an error here
        warnings.simplefilter("ignore")
        frontend = FeatureFrontend(n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    waves = torch.from_numpy(np.random.default_rng(seed).normal(0, 0.1, (batch, n_fft + extra)).astype(np.float32))
    expected = frontend.mel_power(waves)
    frontend.compute_by_matmul()
    computed = frontend.mel_power(waves)
    assert computed.shape == expected.shape
    assert float((computed - expected).abs().max()) <= 2e-6 * float(expected.abs().max())


def test_a_gain_on_the_log_mel_is_a_gain_on_the_waveform():
    waves, lengths = torch.randn(2, 20000) * 0.1, torch.tensor([20000, 15000])
    gain_db = torch.tensor([6.0, -4.0])
    scaled = waves * 10 ** (gain_db[:, None] / 20)
    front = FeatureFrontend(normalize="none")
    on_mel, _ = front(waves, lengths, gain_db)
    torch.testing.assert_close(on_mel, front(scaled, lengths)[0], atol=1e-4, rtol=1e-4)
    from_cached_log_mel, _ = front(*front.log_mel(waves, lengths), gain_db)
    torch.testing.assert_close(from_cached_log_mel, on_mel)
    raw = FeatureFrontend("waveform")
    torch.testing.assert_close(raw(waves, lengths, gain_db)[0], raw(scaled, lengths)[0])


def test_frequency_warp_stretches_each_clip_and_keeps_padding_zero():
    torch.manual_seed(0)
    feats = torch.zeros(3, 40, 10)
    feats[:, 20, :8] = 1.0  # one band, 8 real frames
    frames = torch.tensor([8, 8, 8])
    augment = Augment(gain_db=0, freq_mask=0, time_mask=0, freq_warp=0.2)
    out, _ = augment.features(feats, frames)
    assert out.shape == feats.shape and (out[:, :, 8:] == 0).all()
    peaks = (out[:, :, 0] * torch.arange(40)).sum(1) / out[:, :, 0].sum(1)  # where the band went
    assert ((peaks > 20 / 1.2 - 1e-4) & (peaks < 20 / 0.8 + 1e-4)).all()
    assert peaks.unique().numel() == 3  # a factor per clip
    assert torch.equal(Augment(freq_mask=0, time_mask=0).features(feats, frames)[0], feats)  # off by default


def test_speed_perturbation_stretches_time_and_frequency_together_per_clip():
    torch.manual_seed(0)
    feats = torch.zeros(4, 40, 300)
    feats[:, 20, :200] = 1.0  # one band over 200 real frames
    feats[:, :, 100] = 2.0  # and a marker frame half way
    frames = torch.tensor([200, 200, 200, 200])
    augment = Augment(gain_db=0, freq_mask=0, time_mask=0, speed=0.2)
    out, new_frames = augment.features(feats, frames)
    assert ((new_frames >= 199 // 1.2 + 1) & (new_frames <= 199 // 0.8 + 1)).all()
    assert new_frames.unique().numel() == 4  # a speed per clip
    assert out.shape[-1] == new_frames.max()
    for clip, count in zip(out, new_frames):
        assert (clip[:, count:] == 0).all() and (clip[:, :count].sum(0) > 0).all()  # padding stays zero
        speed = 199 / (count - 1)  # about: the last real frame reads the last frame
        marker = clip[0, :count].argmax()  # the marker frame moves to 100 / speed
        assert abs(marker - 100 / speed) <= 1.5
        band = clip[:, 0]  # the band moves up by the speed
        peak = (band * torch.arange(40)).sum() / band.sum()
        assert abs(peak - 20 * speed) <= 1.0
    same, same_frames = Augment(freq_mask=0, time_mask=0).features(feats, frames)  # off by default
    assert torch.equal(same, feats) and torch.equal(same_frames, frames)


def test_speaker_normalised_front_end_takes_cached_features_as_they_come_and_a_lone_clip_by_pooled_statistics():
    from ser.frontends.normalize import SpeakerStatistics

    front = FeatureFrontend(normalize="speaker")
    mel = torch.randn(2, 128, 30) * 3 + 5
    frames = torch.tensor([30, 20])
    out, _ = front(mel, frames)
    torch.testing.assert_close(out[0], mel[0])  # the data side normalised it per speaker
    wave = torch.randn(1, 30000) * 0.1
    raw, n = front.log_mel(wave, torch.tensor([30000]))
    statistics = SpeakerStatistics(np.linspace(-12, -2, 128), np.linspace(1, 3, 128))
    front.pooled.remember(statistics, frames=1000)
    alone, _ = front(wave, torch.tensor([30000]))  # no other clip of its speaker: the training speakers' pooled
    expected = ((raw.double() - torch.from_numpy(statistics.mean)[:, None]) / torch.from_numpy(statistics.std)[:, None])
    torch.testing.assert_close(alone, expected.float())


def test_mixup_blends_each_clip_with_a_partner_and_keeps_the_longer_length():
    torch.manual_seed(0)
    feats, frames = torch.randn(6, 8, 20), torch.tensor([20, 5, 12, 20, 7, 9])
    mixed, lengths, partner, share = Augment(mixup=0.4).mixed(feats, frames)
    assert sorted(partner.tolist()) == list(range(6)) and 0 <= share <= 1
    torch.testing.assert_close(mixed, share * feats + (1 - share) * feats[partner])
    assert torch.equal(lengths, torch.maximum(frames, frames[partner]))


def test_a_mixup_step_trains_on_the_mixed_labels(compose_cfg):
    from hydra.utils import instantiate

    module = instantiate(compose_cfg(["model=cnn_gru", "augment.mixup=0.4", "features.normalize=utterance"]).model).train()
    waves, lengths = torch.randn(4, 16000), torch.tensor([16000, 12000, 9000, 16000])
    labels = torch.tensor([0, 1, 2, 3])
    logits, loss = module._mixup_step(waves, lengths, labels)
    assert logits.shape == (4, 6) and torch.isfinite(loss) and loss.requires_grad
    module.training_step((waves, lengths, labels), 0)  # the training step takes the mixup road
