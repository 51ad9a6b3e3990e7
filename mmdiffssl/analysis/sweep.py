"""The paper's main analysis: linear probes over a grid of blocks x timesteps.

Features of every (block, timestep) come from one feature cache (one backbone pass per image
for the whole grid); each cell trains a linear classifier on the cached train rows and
reports top-1 on the cached val rows. Results go to a CSV row by row, so an interrupted
sweep resumes where it stopped, and to a heatmap PNG.
"""
import csv
import os
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import DATASETS

CSV_FIELDS = ('block', 'timestep', 'top1')


def linear_probe(train_x, train_y, val_x, val_y, epochs=30, lr=1e-2, batch_size=256, seed=0):
    """Train a linear classifier with SGD (momentum 0.9) on standardised features.

    Args:
        train_x (Tensor): ``(N, D)`` features; ``train_y`` ``(N,)`` labels.
        val_x (Tensor): ``(M, D)``; ``val_y`` ``(M,)``.

    Returns:
        float: top-1 accuracy on the val rows, in percent.
    """
    gen = torch.Generator().manual_seed(seed)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    num_classes = int(max(train_y.max(), val_y.max())) + 1
    fc = torch.nn.Linear(train_x.shape[1], num_classes)
    torch.nn.init.zeros_(fc.weight)
    torch.nn.init.zeros_(fc.bias)
    opt = torch.optim.SGD(fc.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(fc(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        return float((fc(val_x).argmax(1) == val_y).float().mean() * 100)


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


def run_sweep(cfg, blocks, timesteps, work_dir, cache_root, pool=2, epochs=30, lr=1e-2):
    """Linear-probe every (block, timestep); append results to ``work_dir/sweep.csv``.

    Args:
        cfg (Config): a classification config with a frozen diffusion backbone; its train and
            val dataloaders' datasets are probed.
        blocks, timesteps (Sequence[int]): the grid.
        cache_root (str): feature cache folder.
        pool (int): adaptive average pool of each map before the probe (paper: 2).

    Returns:
        dict[(int, int), float]: top-1 of every cell (also those found in the CSV).
    """
    os.makedirs(work_dir, exist_ok=True)
    csv_path = osp.join(work_dir, 'sweep.csv')
    results = _done(csv_path)
    todo = [(b, t) for b in blocks for t in timesteps if (b, t) not in results]
    if not todo:
        return results
    backbone = dict(cfg.model.backbone, blocks=tuple(blocks), timesteps=tuple(timesteps),
                    fuse_timesteps='concat')
    preprocessor = dict(cfg.get('data_preprocessor') or {}, type='mmpretrain.ClsDataPreprocessor')
    splits = {}
    for name in ('train_dataloader', 'val_dataloader'):
        splits[name] = DATASETS.build(dict(
            type='CachedFeatureDataset', dataset=cfg[name].dataset, backbone=backbone,
            data_preprocessor=preprocessor, cache_root=cache_root, pool=pool))
    train, val = splits['train_dataloader'], splits['val_dataloader']
    cells = _cells(train.layout, timesteps)
    train_y, val_y = _labels(train), _labels(val)
    new_file = not osp.isfile(csv_path)
    with open(csv_path, 'a', newline='') as f:
        writer = csv.DictWriter(f, CSV_FIELDS)
        if new_file:
            writer.writeheader()
        for block, t in todo:
            start, stop = cells[(block, t)]
            top1 = linear_probe(torch.from_numpy(np.array(train.features[:, start:stop])).float(),
                                train_y,
                                torch.from_numpy(np.array(val.features[:, start:stop])).float(),
                                val_y, epochs=epochs, lr=lr)
            writer.writerow(dict(block=block, timestep=t, top1=f'{top1:.4f}'))
            f.flush()
            results[(block, t)] = top1
    return results


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
