"""imgapp: a PyTorch CNN on synthetic 3-channel 32x32 images, normalised to [-1, 1]."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

NUM_CLASSES = 4
PER_PARTITION = 160
NUM_TEST = 200


class Net(nn.Module):
    """Model (simple CNN adapted from 'PyTorch: A 60 Minute Blitz')"""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, NUM_CLASSES)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _images(seed: int, n: int):
    """n images: each class a fixed random blocky colour pattern, shifted by up to 3 px, under
    heavy noise; pixels in [0, 1], then normalised as the template's transforms do."""
    coarse = np.random.default_rng(1234).uniform(size=(NUM_CLASSES, 3, 8, 8))
    prototypes = np.kron(coarse, np.ones((1, 1, 4, 4)))  # blocky 32x32 colour patterns
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    shifts = rng.integers(-3, 4, size=(n, 2))
    x = np.stack([np.roll(prototypes[c], tuple(s), axis=(1, 2))
                  for c, s in zip(labels, shifts, strict=True)])
    x = np.clip(0.8 * x + 0.1 + rng.normal(0, 0.3, x.shape), 0.0, 1.0)
    x = (x - 0.5) / 0.5  # Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)


def load_data(partition_id: int, num_partitions: int):
    """This partition's train and validation loaders."""
    x, y = _images(100 + partition_id, PER_PARTITION)
    cut = int(0.8 * PER_PARTITION)
    trainloader = DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=16, shuffle=True)
    valloader = DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=32)
    return trainloader, valloader


def load_centralized_dataset():
    x, y = _images(7, NUM_TEST)
    return DataLoader(TensorDataset(x, y), batch_size=64)


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for images, labels in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(images.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    return running_loss / (epochs * len(trainloader))


def test(net, testloader, device):
    """Validate the model on the test set."""
    net.to(device)
    criterion = torch.nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    net.eval()
    with torch.no_grad():
        for images, labels in testloader:
            outputs = net(images.to(device))
            loss += criterion(outputs, labels.to(device)).item()
            correct += (torch.max(outputs.data, 1)[1] == labels.to(device)).sum().item()
    return loss / len(testloader), correct / len(testloader.dataset)
