"""Channel augmentation (augment=channel): what each effect must do, and the data path it needs.

Rooms reverberate with the RT60 and direct-to-reverberant ratio drawn, microphones colour within
their gains, noise lands at an SNR inside its range; every clip keeps its length and its padding
stays zero, and a clip comes out the same alone or padded in a batch. Where it is on, the
training split arrives as waveforms (each with its speaker's statistics for a per-speaker model)
whose features equal the cached ones when nothing is drawn; evaluation never changes.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ser.augment.channel import (
    NOISE_TAPS,
    ChannelAugment,
    Draw,
    Microphone,
    coloured_noise,
    microphone_responses,
    room_impulse_responses,
)
from ser.data.audio import write_wav
from ser.errors import ConfigError

RATE = 16000
ONLY_NOISE = dict(room=dict(p=0.0), microphone=dict(p=0.0), noise=dict(p=1.0))
EVERYTHING = dict(room=dict(p=1.0), microphone=dict(p=1.0), noise=dict(p=1.0))
quick = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def speech_like(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of tones with a varying level (padding zero), and its lengths."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    time = torch.arange(longest) / RATE
    waves = torch.zeros(len(lengths), longest)
    for row, length in zip(waves, lengths):
        pitch = 100 + 200 * torch.rand((), generator=generator)
        row[:length] = (0.3 * torch.sin(2 * math.pi * pitch * time) * (1 + torch.sin(3 * time)))[:length]
    return waves, torch.tensor(lengths)


def real_energy(x: torch.Tensor, length: int) -> float:
    return float(x[:length].double().square().sum())


clip_lengths = st.lists(st.integers(min_value=2048, max_value=12000), min_size=1, max_size=6)


@given(clip_lengths, st.floats(-5, 25), st.floats(0, 15))
@quick
def test_noise_lands_at_an_snr_inside_its_range_over_each_clips_real_samples(lengths, low, width):
    torch.manual_seed(len(lengths))
    channel = ChannelAugment(**{**ONLY_NOISE, "noise": dict(p=1.0, snr_db=[low, low + width])})
    waves, lengths_t = speech_like(lengths)
    out = channel(waves, lengths_t, RATE)
    assert out.shape == waves.shape
    for row, clean, length in zip(out, waves, lengths):
        snr = 10 * math.log10(real_energy(clean, length) / real_energy(row - clean, length))
        assert low - 1e-3 <= snr <= low + width + 1e-3
        assert not row[length:].any()  # the padding stays zero


def schroeder_rt60(response: np.ndarray) -> float:
    """RT60 from the response's Schroeder decay curve, as ISO 3382 reads it: the slope of the
    line through -5 to -25 dB (T20), extended to 60 dB."""
    energy = np.cumsum(response[::-1] ** 2)[::-1]
    decay = 10 * np.log10(energy / energy[0])
    start, end = np.argmax(decay <= -5), np.argmax(decay <= -25)
    slope = np.polyfit(np.arange(start, end) / RATE, decay[start:end], 1)[0]
    return -60 / slope


@pytest.mark.parametrize("rt60", [0.2, 0.45, 0.8])
def test_a_generated_room_decays_60_db_in_its_rt60_after_a_direct_path_drr_db_above_it(rt60):
    torch.manual_seed(0)
    drr = torch.tensor([0.0, 6.0, 12.0])
    responses = room_impulse_responses(torch.full((3,), rt60), drr, RATE).numpy().astype(np.float64)
    for response, ratio in zip(responses, drr.tolist()):
        tail = response.copy()
        tail[0] = 0  # the direct path
        assert schroeder_rt60(tail) == pytest.approx(rt60, rel=0.1)
        assert 10 * math.log10(response[0] ** 2 / np.square(tail).sum()) == pytest.approx(ratio, abs=1e-3)


def test_a_reverberated_click_rings_with_the_rooms_rt60_and_is_cut_where_the_clip_ends():
    torch.manual_seed(1)
    channel = ChannelAugment(room=dict(p=1.0, rt60=[0.5, 0.5]), microphone=dict(p=0.0), noise=dict(p=0.0))
    click = torch.zeros(2, 2 * RATE)
    click[:, 0] = 1.0
    lengths = torch.tensor([2 * RATE, RATE // 4])  # the second recording stops mid-tail
    out = channel(click, lengths, RATE)
    ring = out[0].numpy().astype(np.float64)
    ring[0] = 0
    assert schroeder_rt60(ring) == pytest.approx(0.5, rel=0.1)
    assert out[1, : RATE // 4].abs().sum() > 0 and not out[1, RATE // 4:].any()


@given(clip_lengths, st.integers(0, 2**16))
@quick
def test_a_clip_is_changed_the_same_alone_or_padded_in_a_batch(lengths, seed):
    torch.manual_seed(seed)
    channel = ChannelAugment(**EVERYTHING)
    waves, lengths_t = speech_like(lengths, seed)
    draw = channel.draw(waves, lengths_t, RATE)
    batch = channel.apply(waves, lengths_t, draw)
    for i, length in enumerate(lengths):
        alone = Draw(draw.kernels[i: i + 1], draw.noise[i: i + 1, :length], draw.snr_db[i: i + 1], draw.noisy[i: i + 1])
        single = channel.apply(waves[i: i + 1, :length], lengths_t[i: i + 1], alone)
        torch.testing.assert_close(batch[i, :length], single[0], rtol=1e-4, atol=1e-5)
        assert not batch[i, length:].any()


def test_a_microphone_colours_within_its_gains_and_with_no_gain_is_no_microphone():
    torch.manual_seed(2)
    flat = ChannelAugment(room=dict(p=0.0), microphone=dict(p=1.0, gain_db=0.0), noise=dict(p=0.0))
    waves, lengths = speech_like([8000, 6000])
    torch.testing.assert_close(flat(waves, lengths, RATE), waves, rtol=0, atol=1e-6)
    responses = microphone_responses(Microphone(gain_db=6.0, peaks=3), 20, RATE)
    level_db = 20 * torch.log10(torch.fft.rfft(responses.double(), n=8192).abs())
    bound = 6.0 * (3 + 2)  # three peaks and two shelves, each at most 6 dB
    assert level_db.abs().max() <= bound + 0.5
    assert (level_db.abs().amax(1) > 1.0).all()  # each response is a colouring, not a copy
    assert not torch.allclose(level_db[0], level_db[1], atol=0.5)  # and each clip its own


@pytest.mark.parametrize("colour", [0.0, 1.0, 2.0])
def test_generated_noise_falls_as_one_over_f_to_its_colour(colour):
    torch.manual_seed(3)
    noise = coloured_noise(torch.full((8,), colour), 4 * RATE).double()
    frames = noise.unfold(-1, 2048, 1024) * torch.hann_window(2048, dtype=torch.float64)
    power = torch.fft.rfft(frames).abs().square().mean((0, 1))  # Welch's average
    frequency = torch.fft.rfftfreq(2048, 1 / RATE)
    band = (frequency >= 100) & (frequency <= 4000)
    slope = np.polyfit(np.log10(frequency[band]), np.log10(power[band]), 1)[0]
    assert slope == pytest.approx(-colour, abs=0.15)
    assert noise.shape == (8, 4 * RATE) and NOISE_TAPS < 4 * RATE


def test_a_users_folders_of_rooms_and_noises_are_read_aligned_repeated_and_a_bad_file_is_skipped(tmp_path, caplog):
    rooms, noises = tmp_path / "rirs", tmp_path / "noises"
    measured = np.zeros(RATE // 2)
    measured[100] = -0.5  # a measured response: silence before the direct path, which is negative here
    measured[101:] = 0.1 * np.exp(-np.arange(len(measured) - 101) / 800) * np.random.default_rng(0).standard_normal(len(measured) - 101)
    write_wav(rooms / "hall" / "a.wav", np.clip(measured, -1, 1), RATE)
    write_wav(noises / "short.wav", 0.1 * np.random.default_rng(1).standard_normal(RATE // 10), 8000)  # 8 kHz, 0.1 s
    (noises / "broken.wav").write_bytes(b"RIFF not really")
    torch.manual_seed(4)
    channel = ChannelAugment(room=dict(p=1.0, folder=str(rooms)), microphone=dict(p=0.0),
                             noise=dict(p=1.0, folder=str(noises), snr_db=[10, 10]))
    responses = channel.rooms.impulse_responses(3, RATE, torch.device("cpu"))
    assert responses.shape[0] == 3 and (responses[:, 0] == 1).all()  # the direct path at sample 0, scaled to 1
    centred = measured - measured.mean()  # every file enters through ser.data.audio, its DC offset removed
    np.testing.assert_allclose(responses[0, 1:50].numpy(), centred[101:150] / centred[100], atol=2e-4)  # 16-bit
    with caplog.at_level(logging.WARNING):
        excerpts = channel.noises.excerpts(4, RATE, RATE, torch.device("cpu"))
    assert excerpts.shape == (4, RATE) and "broken.wav" in caplog.text
    assert channel.noises.files == [noises / "short.wav"]  # skipped once, never drawn again
    waves, lengths = speech_like([RATE, RATE // 2])
    out = channel(waves, lengths, RATE)
    assert out.isfinite().all() and not out[1, RATE // 2:].any()


@pytest.mark.parametrize("options, named", [
    (dict(noise=dict(snr_db=[20, 5])), "augment.channel.noise.snr_db"),
    (dict(room=dict(p=1.5)), "augment.channel.room.p=1.5"),
    (dict(room=dict(rt60=[0.0, 0.5])), "augment.channel.room.rt60"),
    (dict(microphone=dict(peaks=-1)), "peaks"),
    (dict(noise=dict(folder="/nowhere/noises")), "/nowhere/noises"),
])
def test_a_channel_mistake_names_its_key(options, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("[", r"\[")):
        ChannelAugment(**options)


@pytest.fixture
def channel_data(compose_cfg):
    """A log-mel CNN-GRU normalising per speaker with every channel effect switched off, and its
    data module serving the training split as waveforms."""
    from hydra.utils import instantiate

    from conftest import SMALL

    off = ["augment.channel.room.p=0", "augment.channel.microphone.p=0", "augment.channel.noise.p=0"]
    cfg = compose_cfg(["model=cnn_gru", "augment=channel", *off, *SMALL])
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend, task=module.task,
                             train_on_waveforms=module.augments_waveforms)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return module, datamodule


def test_training_waveforms_of_a_per_speaker_model_give_the_cached_features_when_nothing_is_drawn(channel_data):
    from ser.data.loading import pad_batch
    from ser.frontends.normalize import SpeakerStatistics

    module, datamodule = channel_data
    train = datamodule.datasets["train"]
    assert module.augments_waveforms

    # Any batch of the split's clips, in any order, of any mix of lengths: each row's log-mel,
    # standardised by its speaker's statistics, is the cache's row.
    @quick
    @given(st.lists(st.integers(0, len(train) - 1), min_size=1, max_size=8))
    def the_cache_of_each_row(picked):
        waves, lengths, _, mean, std = pad_batch([train[i] for i in picked])
        assert waves.dim() == 2 and mean.shape == std.shape == (len(picked), module.frontend.n_mels)
        feats, frames = module.frontend(waves, lengths, statistics=SpeakerStatistics(mean[:, None], std[:, None]))
        for row, i in enumerate(picked):
            expected = torch.from_numpy(datamodule.normalised.read(train.paths[i])).T
            torch.testing.assert_close(feats[row, :, : int(frames[row])], expected, rtol=1e-4, atol=1e-4)

    the_cache_of_each_row()
    waves, lengths, labels, mean, std = pad_batch([train[i] for i in (0, len(train) - 1)])
    # The loader serves the same, and validation and test read the cache, unchanged.
    assert [t.dim() for t in next(iter(datamodule.train_dataloader()))] == [2, 1, 1, 2, 2]
    assert next(iter(datamodule.val_dataloader()))[0].dim() == 3
    assert module.training_step((waves, lengths, labels, mean, std), 0).isfinite()


def test_evaluation_never_augments(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["model=cnn_gru", "augment=channel", "features.normalize=utterance",
                       *(f"augment.channel.{effect}.p=1" for effect in ("room", "microphone", "noise"))])
    augmented = instantiate(cfg.model)
    plain = instantiate(compose_cfg(["model=cnn_gru", "augment=none", "features.normalize=utterance"]).model)
    plain.load_state_dict(augmented.state_dict())  # the channel adds nothing to a checkpoint
    waves, lengths = speech_like([RATE, RATE // 2])
    augmented.eval(), plain.eval()
    with torch.no_grad():  # the validation, test and prediction path: the module's forward
        torch.testing.assert_close(augmented(waves, lengths), plain(waves, lengths), rtol=0, atol=0)
        changed = augmented._train_features(waves, lengths)[0]
    assert not torch.allclose(changed, plain.frontend(waves, lengths)[0])  # training does change them


def test_a_channel_run_trains_on_changed_waveforms_and_tests_on_the_cache(cache_dir, tmp_path, caplog):
    from conftest import SMALL, train_here

    with caplog.at_level(logging.INFO):
        results = train_here(["model=cnn_gru", "augment=channel", "debug=fdr", "logger=csv", *SMALL], tmp_path)
    assert "Training clips are read as waveforms" in caplog.text
    assert 0 <= results["test/uar"] <= 1


@pytest.mark.parametrize("keep", [True, False])
def test_a_per_speaker_model_keeps_a_changed_clips_clean_level_as_its_speakers_statistics_would(
        compose_cfg, monkeypatch, keep):
    """A channel that only scales every clip (a level all of a speaker's clips would share) is
    removed by the speaker's statistics at test time: with keep_clean_level the network reads
    the clean clip's features; without, the change reaches it whole."""
    from hydra.utils import instantiate

    from ser.frontends.normalize import SpeakerStatistics

    module = instantiate(compose_cfg(["model=cnn_gru", "augment=channel", f"augment.channel.keep_clean_level={keep}"]).model)
    monkeypatch.setattr(module.augment.channel, "forward", lambda waves, lengths, rate: 2 * waves)
    waves, lengths = speech_like([RATE, RATE // 2])
    waves = (waves + 0.05 * torch.randn(waves.shape, generator=torch.Generator().manual_seed(0))) * (waves != 0)
    bands = module.frontend.n_mels  # (every band well above the log floor: a level shift is exact there)
    statistics = SpeakerStatistics(torch.randn(2, 1, bands, dtype=torch.float64), 1 + torch.rand(2, 1, bands, dtype=torch.float64))
    changed, counts, moved = module._through_channel(waves, lengths, statistics)
    assert changed.dim() == (3 if keep else 2)  # kept: the changed log-mel, computed once
    clean_features, frames = module.frontend(waves, lengths, statistics=statistics)
    changed_features, _ = module.frontend(changed, counts, statistics=moved)
    if keep:
        torch.testing.assert_close(changed_features, clean_features, rtol=1e-4, atol=1e-3)
    else:  # 4x the power: log(4) more in every band, over the speaker's std
        shift = math.log(4) / statistics.std.float()[:, 0, :, None]
        torch.testing.assert_close(changed_features[0], clean_features[0] + shift[0], rtol=1e-4, atol=1e-3)
