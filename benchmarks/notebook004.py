"""Notebook 004's CNN-GRU pipeline as published, kept here only as the benchmark's baseline.

Per item, in ``__getitem__`` and on the main process (DataLoader defaults, no workers):
decode, resample, mel spectrogram, dB, min-max, masks, pad/crop to 160 frames; then the
published ``Base_CNN_GRU`` trained with Adam at the notebook's learning rate. soundfile
stands in for ``torchaudio.load`` (which now needs torchcodec); nothing else is changed.
As published, augmentation is off in training too: the notebook sets ``transform`` on the
dataset shared by both halves of its ``random_split``, so the last assignment (False) wins.
"""

from __future__ import annotations

import random
import time

import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import multiclass_recall

from common import sync

LEARNING_RATE = 0.00025  # the notebook's choice for CNN-GRU
BATCH_SIZE = 32
TARGET_FRAMES = 160


class AudioDataset(Dataset):
    def __init__(self, paths: list[str], labels: list[int], transform: bool = False):
        self.paths, self.labels, self.transform = paths, labels, transform
        self.sample_rate = 16000
        self.mel_transform = T.MelSpectrogram(sample_rate=16000, n_fft=2048, hop_length=512, n_mels=128)
        self.db_transform = T.AmplitudeToDB()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        samples, sample_rate = sf.read(self.paths[idx], dtype="float32", always_2d=True)
        waveform = torch.from_numpy(samples.T.copy())
        if sample_rate != self.sample_rate:
            waveform = T.Resample(orig_freq=sample_rate, new_freq=self.sample_rate)(waveform)
        if waveform.shape[0] > 1:
            waveform = waveform.mean(dim=0, keepdim=True)
        waveform = waveform - waveform.mean()
        if self.transform and random.random() < 0.5:
            waveform = T.Vol(gain=random.uniform(0.5, 1.5), gain_type="amplitude")(waveform)
        mel_spec = self.db_transform(self.mel_transform(waveform))
        mel_spec = (mel_spec - mel_spec.min()) / (mel_spec.max() - mel_spec.min() + 1e-6)
        if self.transform:
            if random.random() < 0.5:
                mel_spec = T.FrequencyMasking(freq_mask_param=15)(mel_spec)
            if random.random() < 0.5:
                mel_spec = T.TimeMasking(time_mask_param=35)(mel_spec)
        current = mel_spec.shape[-1]
        if current < TARGET_FRAMES:
            mel_spec = F.pad(mel_spec, (0, TARGET_FRAMES - current))
        else:
            mel_spec = mel_spec[:, :, :TARGET_FRAMES]
        return mel_spec.squeeze(0), torch.tensor(self.labels[idx], dtype=torch.long)


def collate_fn(batch):
    spectrograms, labels = zip(*batch)
    longest = max(spec.shape[1] for spec in spectrograms)
    padded = [F.pad(spec, (0, longest - spec.shape[1])) for spec in spectrograms]
    return torch.stack(padded), torch.tensor(labels, dtype=torch.long)


class Base_CNN_GRU(nn.Module):  # noqa: N801 - the notebook's name
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128)
        self.conv4, self.bn4 = nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256)
        self.pool, self.relu = nn.MaxPool2d(2, 2), nn.ReLU()
        self.residualConv = nn.Conv2d(1, 64, kernel_size=1, stride=2, padding=1)
        self.gru = nn.GRU(input_size=256 * 8, hidden_size=128, num_layers=1, batch_first=True,
                          bidirectional=True)
        self.classifier1 = nn.Linear(128 * 2, 64)
        self.classifier2 = nn.Linear(64, 6)

    def forward(self, x):
        residual = x
        x = self.bn1(self.pool(self.relu(self.conv1(x))))
        x = self.conv2(x)
        residual = self.residualConv(residual)
        x = F.pad(x, (0, 1))
        x = x + residual[:, :, : x.shape[2], : x.shape[3]]
        x = self.bn2(self.pool(self.relu(x)))
        x = self.bn3(self.pool(self.relu(self.conv3(x))))
        x = self.bn4(self.pool(self.relu(self.conv4(x))))
        B, C, H, W = x.shape
        x = x.permute(0, 3, 1, 2).contiguous().view(B, W, C * H)
        x, _ = self.gru(x)
        return self.classifier2(self.classifier1(x[:, -1, :]))


def train_and_test(train: tuple[list, list], test: tuple[list, list], epochs: int,
                   precompute: bool = False) -> tuple[list[float], float]:
    """Seconds of each training epoch, and the test UAR (torchmetrics, as ser computes it).

    ``precompute``: make each item once, before training. As published the pipeline has no
    augmentation, so an item is the same every epoch: only the timing changes (for the
    benchmarks that compare scores, not speed)."""
    torch.manual_seed(0)
    random.seed(0)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")  # as the notebook
    model = Base_CNN_GRU().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    criterion = nn.CrossEntropyLoss().to(device)
    dataset = AudioDataset(*train)
    if precompute:
        dataset = [dataset[i] for i in range(len(dataset))]
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, collate_fn=collate_fn, shuffle=True)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs.unsqueeze(1)), labels)
            loss.backward()
            optimizer.step()
        sync()
        seconds.append(time.perf_counter() - start)
    model.eval()
    predictions, truth = [], []
    with torch.no_grad():
        for inputs, labels in DataLoader(AudioDataset(*test), batch_size=BATCH_SIZE, collate_fn=collate_fn):
            predictions.append(model(inputs.unsqueeze(1).to(device)).argmax(1).cpu())
            truth.append(labels)
    uar = multiclass_recall(torch.cat(predictions), torch.cat(truth), num_classes=6, average="macro")
    return seconds, float(uar)
