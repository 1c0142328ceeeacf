"""bcapp: a PyTorch MLP on scikit-learn's breast-cancer data."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from torch.utils.data import DataLoader, TensorDataset

NUM_TEST = 120  # held out for the server's central evaluation


class Net(nn.Module):
    """A small MLP: 30 features to 2 classes."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(30, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 2)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _dataset():
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(42).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    train = x[NUM_TEST:]
    x = (x - train.mean(0)) / (train.std(0) + 1e-8)  # standardised on the training part
    return x, y


def load_data(partition_id: int, num_partitions: int):
    """This partition's train and validation loaders (IID shares of the non-test samples)."""
    x, y = _dataset()
    idx = np.array_split(np.arange(NUM_TEST, len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(idx))
    part = {"train": idx[:cut], "val": idx[cut:]}
    loaders = [
        DataLoader(TensorDataset(torch.tensor(x[i]), torch.tensor(y[i])), batch_size=16,
                   shuffle=(name == "train"))
        for name, i in part.items()
    ]
    return loaders[0], loaders[1]


def load_centralized_dataset():
    """The held-out test part."""
    x, y = _dataset()
    return DataLoader(TensorDataset(torch.tensor(x[:NUM_TEST]), torch.tensor(y[:NUM_TEST])),
                      batch_size=64)


def train(net, trainloader, epochs, lr, device):
    """Train the model on the training set; returns the average loss."""
    net.to(device)
    criterion = nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    running_loss = 0.0
    for _ in range(epochs):
        for xb, yb in trainloader:
            optimizer.zero_grad()
            loss = criterion(net(xb.to(device)), yb.to(device))
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
    return running_loss / (epochs * len(trainloader))


def test(net, testloader, device):
    """Validate the model on the test set; returns (loss, accuracy)."""
    net.to(device)
    criterion = nn.CrossEntropyLoss()
    correct, loss = 0, 0.0
    net.eval()
    with torch.no_grad():
        for xb, yb in testloader:
            outputs = net(xb.to(device))
            loss += criterion(outputs, yb.to(device)).item()
            correct += (torch.max(outputs.data, 1)[1] == yb.to(device)).sum().item()
    return loss / len(testloader), correct / len(testloader.dataset)
