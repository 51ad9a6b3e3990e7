"""The paper's main analysis: linear probes over a grid of blocks x timesteps.

Features of every (block, timestep) come from one feature cache (one backbone pass per image
for the whole grid); each cell trains a linear classifier on the cached train rows and
reports top-1 on the cached val rows. Results go to a CSV row by row, so an interrupted
sweep resumes where it stopped, and to a heatmap PNG.

A CSV row is keyed by (block, timestep) only, so the CSV is bound to what else determines
its numbers: :func:`sweep_key` (the backbone config without its grid, a fingerprint of the
U-Net weights, the data preprocessor, the train and val datasets, the probe settings) is
written next to it as ``sweep_key.json`` and a rerun in the same folder with another key is
refused (:class:`SweepKeyMismatch`, naming the fields that differ) instead of returning the
first run's numbers. ``keyed=True`` writes into ``work_dir/<key digest>/`` instead, so runs
with different keys live side by side and each one resumes its own cells.
"""
import csv
import hashlib
import json
import os
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import DATASETS, MODELS

from mmdiffssl.models.input_range import model_preprocessor

CSV_FIELDS = ('block', 'timestep', 'top1')
KEY_FILE = 'sweep_key.json'
KEY_VERSION = 2  # 2: data_preprocessor is the model's (typed), as the caches use it


class SweepKeyMismatch(RuntimeError):
    """A sweep folder holds results made with other settings than the ones asked for."""


class LinearProbe(torch.nn.Module):
    """A linear classifier on standardised features (the train rows' mean and std)."""

    def __init__(self, mean, std, num_classes):
        super().__init__()
        self.register_buffer('mean', mean)
        self.register_buffer('std', std)
        self.fc = torch.nn.Linear(mean.numel(), num_classes)
        torch.nn.init.zeros_(self.fc.weight)
        torch.nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc((x - self.mean) / self.std)


def fit_linear_probe(train_x, train_y, epochs=30, lr=1e-2, batch_size=256, seed=0,
                     weight_decay=0.0, num_classes=None, device=None):
    """Train a linear classifier with SGD (momentum 0.9, cosine decay) on standardised features.

    The weights start at zero, so ``seed`` only orders the mini-batches (drawn on the CPU,
    so the order is the same on every device).

    Args:
        train_x (Tensor): ``(N, D)`` features; ``train_y`` ``(N,)`` labels.
        num_classes (int, optional): default ``max(train_y) + 1``.
        device (str, optional): where the probe trains (default: where ``train_x`` is).

    Returns:
        LinearProbe: in eval mode, on ``device``; ``probe(x)`` gives ``(M, num_classes)``
        logits.
    """
    if device is not None:
        train_x, train_y = train_x.to(device), train_y.to(device)
    gen = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    probe = LinearProbe(mean, std, num_classes or int(train_y.max()) + 1).to(train_x.device)
    train_x = (train_x - mean) / std
    opt = torch.optim.SGD(probe.fc.parameters(), lr=lr, momentum=0.9,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=gen).to(train_x.device)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(probe.fc(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return probe.eval()


def linear_probe(train_x, train_y, val_x, val_y, epochs=30, lr=1e-2, batch_size=256, seed=0,
                 weight_decay=0.0, device=None):
    """Train a linear classifier with SGD (momentum 0.9) on standardised features.

    Args:
        train_x (Tensor): ``(N, D)`` features; ``train_y`` ``(N,)`` labels.
        val_x (Tensor): ``(M, D)``; ``val_y`` ``(M,)``.
        device (str, optional): where the probe trains and predicts (default: where
            ``train_x`` is).

    Returns:
        float: top-1 accuracy on the val rows, in percent.
    """
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    probe = fit_linear_probe(train_x, train_y, epochs=epochs, lr=lr, batch_size=batch_size,
                             seed=seed, weight_decay=weight_decay, num_classes=num_classes,
                             device=device)
    with torch.no_grad():
        predicted = probe(val_x.to(probe.mean.device)).argmax(1).cpu()
    return float((predicted == val_y.cpu()).float().mean() * 100)


def _cells(layout, timesteps):
    """{(block, t): (start, stop)} column ranges of each block's features at each timestep."""
    cells, offset = {}, 0
    for block, channels, h, w in layout:
        per_t = channels // len(timesteps) * h * w
        for i, t in enumerate(timesteps):
            cells[(block, t)] = (offset + i * per_t, offset + (i + 1) * per_t)
        offset += channels * h * w
    return cells


def _labels(dataset):
    return torch.tensor([int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset))])


def _done(csv_path):
    if not osp.isfile(csv_path):
        return {}
    with open(csv_path) as f:
        return {(int(r['block']), int(r['timestep'])): float(r['top1'])
                for r in csv.DictReader(f)}


def _jsonable(value):
    """Config values (ConfigDict, tuples, ranges) as plain JSON-able data."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def weights_id(backbone_cfg):
    """What fixes a backbone's weights, for every family: its ``weights_fingerprint()`` (the
    weights files' checksums, or the random init and its seed), from a shape-only build."""
    from mmdiffssl.models.backbones.base import shapes_only
    with shapes_only():
        backbone = MODELS.build(dict(backbone_cfg))
    return backbone.weights_fingerprint()


def sweep_key(cfg, pool=2, epochs=30, lr=1e-2, weight_decay=0.0, batch_size=256, seed=0):
    """Everything besides (block, timestep) that determines a sweep's numbers, as JSON data.

    The backbone config without its grid (blocks, timesteps and fusion are the sweep's) and
    without the checkpoint's path (its content is in ``weights``), the weights' fingerprint
    (:func:`weights_id`), the data preprocessor, the train and val dataset configs (data
    root, split, subset indices, pipeline) and the probe settings.
    """
    backbone = {k: v for k, v in dict(cfg.model.backbone).items()
                if k not in ('blocks', 'timesteps', 'fuse_timesteps', 'checkpoint')}
    return dict(
        version=KEY_VERSION,
        backbone=_jsonable(backbone),
        weights=weights_id(cfg.model.backbone),
        data_preprocessor=_jsonable(model_preprocessor(cfg)),
        train=_jsonable(cfg.train_dataloader.dataset),
        val=_jsonable(cfg.val_dataloader.dataset),
        probe=dict(pool=pool, epochs=epochs, lr=lr, weight_decay=weight_decay,
                   batch_size=batch_size, seed=seed))


def key_digest(key):
    """A short hex digest of a JSON-able key (folder names)."""
    return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()


def _short(value, width=60):
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + '...'


def key_differences(old, new, prefix=''):
    """``['field: old -> new', ...]`` for the leaves where two keys differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs = []
        for name in sorted(set(old) | set(new)):
            diffs += key_differences(old.get(name), new.get(name), f'{prefix}{name}.')
        return diffs
    if old == new:
        return []
    return [f'{prefix[:-1]}: {_short(old)} -> {_short(new)}']


def check_sweep_key(work_dir, key):
    """Bind ``work_dir`` to ``key``: write ``sweep_key.json`` for a new sweep, else compare.

    Raises:
        SweepKeyMismatch: the folder's CSV was made with another key, or it has a CSV but no
            key (an older version wrote it): its numbers cannot be told apart from this
            run's. The message names the fields that differ.
    """
    key_path = osp.join(work_dir, KEY_FILE)
    csv_path = osp.join(work_dir, 'sweep.csv')
    if not osp.isfile(key_path):
        if osp.isfile(csv_path):
            raise SweepKeyMismatch(
                f'{csv_path} has no {KEY_FILE}: it was written without a record of the '
                'checkpoint, config, data and probe settings behind its numbers, so they '
                'cannot be reused; delete it or use another --work-dir')
        os.makedirs(work_dir, exist_ok=True)
        with open(key_path + '.part', 'w') as f:
            json.dump(key, f, indent=1, sort_keys=True)
        os.replace(key_path + '.part', key_path)
        return
    with open(key_path) as f:
        old = json.load(f)
    # through JSON, as it was stored: tuples become lists
    diffs = key_differences(old, json.loads(json.dumps(key)))
    if diffs:
        raise SweepKeyMismatch(
            f'{csv_path} holds a sweep made with other settings, so its numbers are not '
            'this run\'s; differing fields (stored -> now): ' + '; '.join(diffs)
            + '. Delete the folder, use another --work-dir, or --keyed to give each key its '
            'own subfolder')


class SweepResults(dict):
    """``{(block, t): top1}`` of a sweep; ``folder`` is where its ``sweep.csv`` is."""

    def __init__(self, *args, folder=None):
        super().__init__(*args)
        self.folder = folder


def run_sweep(cfg, blocks, timesteps, work_dir, cache_root, pool=2, epochs=30, lr=1e-2,
              weight_decay=0.0, keyed=False, key=None):
    """Linear-probe every (block, timestep); append results to ``<folder>/sweep.csv``.

    Args:
        cfg (Config): a classification config with a frozen diffusion backbone; its train and
            val dataloaders' datasets are probed.
        blocks, timesteps (Sequence[int]): the grid.
        work_dir (str): the sweep's folder (``keyed=False``) or the parent of one folder per
            key (``keyed=True``: ``work_dir/<key_digest(key)>/``).
        cache_root (str): feature cache folder.
        pool (int): adaptive average pool of each map before the probe (paper: 2).
        epochs, lr, weight_decay: probe settings (:func:`fit_linear_probe`).
        key (dict, optional): :func:`sweep_key` of these arguments, when the caller has it.

    Returns:
        dict[(int, int), float]: top-1 of every cell (also those found in the CSV). Its
        ``folder`` attribute is the folder holding ``sweep.csv``.

    Raises:
        SweepKeyMismatch: ``work_dir`` (``keyed=False``) holds a sweep of another key.
    """
    key = key or sweep_key(cfg, pool=pool, epochs=epochs, lr=lr, weight_decay=weight_decay)
    folder = osp.join(work_dir, key_digest(key)) if keyed else work_dir
    check_sweep_key(folder, key)
    csv_path = osp.join(folder, 'sweep.csv')
    results = SweepResults(_done(csv_path), folder=folder)
    todo = [(b, t) for b in blocks for t in timesteps if (b, t) not in results]
    if not todo:
        return results
    train, val = sweep_datasets(cfg, blocks, timesteps, cache_root, pool)
    cells = _cells(train.layout, timesteps)
    train_y, val_y = _labels(train), _labels(val)
    new_file = not osp.isfile(csv_path)
    with open(csv_path, 'a', newline='') as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        if new_file:
            writer.writeheader()
        for block, t in todo:
            start, stop = cells[(block, t)]
            top1 = linear_probe(cell_rows(train, start, stop), train_y,
                                cell_rows(val, start, stop), val_y, epochs=epochs, lr=lr,
                                weight_decay=weight_decay)
            writer.writerow(dict(block=block, timestep=t, top1=f'{top1:.4f}'))
            f.flush()
            results[(block, t)] = top1
    return results


def sweep_datasets(cfg, blocks, timesteps, cache_root, pool, **fill):
    """The cached train and val feature datasets of a grid (filled on first use); ``fill``:
    :class:`~mmdiffssl.datasets.CachedFeatureDataset`'s ``batch_size`` and ``device``."""
    backbone = dict(cfg.model.backbone, blocks=tuple(blocks), timesteps=tuple(timesteps),
                    fuse_timesteps='concat')
    preprocessor = model_preprocessor(cfg)
    return tuple(
        DATASETS.build(dict(type='CachedFeatureDataset', dataset=cfg[name].dataset,
                            backbone=backbone, data_preprocessor=preprocessor,
                            cache_root=cache_root, pool=pool, **fill))
        for name in ('train_dataloader', 'val_dataloader'))


def cell_columns(layout, timesteps, block, timestep):
    """``(start, stop)`` columns of one (block, timestep) in a cached row of the grid."""
    return _cells(layout, timesteps)[(block, timestep)]


def cell_rows(dataset, start, stop):
    """Columns ``start:stop`` of every cached row, as a float32 ``(N, stop - start)`` tensor."""
    return torch.from_numpy(np.array(dataset.features[:, start:stop])).float()


def plot_heatmap(results, png_path, title='linear probe top-1 (%)'):
    """Heatmap of ``{(block, t): top1}`` (blocks on rows, timesteps on columns) as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    blocks = sorted({b for b, _ in results})
    timesteps = sorted({t for _, t in results})
    grid = np.full((len(blocks), len(timesteps)), np.nan)
    for (b, t), v in results.items():
        grid[blocks.index(b), timesteps.index(t)] = v
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(timesteps), 1.0 + 0.5 * len(blocks)))
    im = ax.imshow(grid, cmap='viridis', aspect='auto')
    ax.set_xticks(range(len(timesteps)), [str(t) for t in timesteps])
    ax.set_yticks(range(len(blocks)), [str(b) for b in blocks])
    ax.set_xlabel('timestep')
    ax.set_ylabel('block')
    for i in range(len(blocks)):
        for j in range(len(timesteps)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f'{grid[i, j]:.1f}', ha='center', va='center', color='w',
                        fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
