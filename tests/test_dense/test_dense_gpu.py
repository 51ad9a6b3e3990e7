"""The issue's GPU measurements, and a CPU dry run of the same code.

On a CUDA GPU (``pytest -m gpu tests/test_dense/test_dense_gpu.py -s``): seconds per
training iteration and peak memory of
- Mask R-CNN, adm-256-uncond pyramid + FPN, 1024 x 1024, batch 2: frozen; fine-tuned with
  checkpointing (fp32, bf16 AMP); the block-24 simple-FPN variant frozen and fine-tuned;
- UPerNet, adm-256-uncond pyramid, 512 x 512, batch 2: frozen; fine-tuned with checkpointing
  (fp32, bf16 AMP).
Each row is printed and appended to ``$DENSE_GPU_OUT`` (default
``work_dirs/dense_gpu_measurements.jsonl``); a setting that does not fit fails with CUDA's
out-of-memory error (see configs/mask_rcnn/README.md for the fallback settings to measure).
``tools/device/dense.sh`` (device run 2) measures the same with one command and a deadline.
"""
import json
import os
import os.path as osp

import pytest
import torch

from benchmarks.dense import measure_train_step  # tools/benchmarks/dense.py
from dense_data import ROOT, TINY_ARCH

MASK_RCNN = osp.join(ROOT, 'configs', 'mask_rcnn')
UPERNET = osp.join(ROOT, 'configs', 'upernet')
GPU_CASES = [
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-1x_coco.py', None),
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py', None),
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-amp-bf16-1x_coco.py', None),
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-frozen_fpn_8xb2-amp-bf16-1x_coco.py', None),
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py', None),
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-b24-ft-cp_simple-fpn_8xb2-1x_coco.py', None),
    # fallback if the fine-tuned pyramid does not fit: train only the decoder (blocks 19+)
    (MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-amp-bf16-1x_coco.py',
     dict(trainable_from=19)),
    (UPERNET, 'upernet_adm-256-uncond-pyramid-frozen_8xb2-80k_ade20k-512x512.py', None),
    (UPERNET, 'upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py', None),
    (UPERNET, 'upernet_adm-256-uncond-pyramid-ft-cp_8xb2-amp-bf16-80k_ade20k-512x512.py', None),
]


@pytest.mark.gpu
@pytest.mark.parametrize('folder,name,backbone', GPU_CASES,
                         ids=[f'{c[1]}{"-" + str(c[2]) if c[2] else ""}' for c in GPU_CASES])
def test_train_step_time_and_peak_memory(folder, name, backbone):
    if not torch.cuda.is_available():
        pytest.skip('needs a CUDA GPU')
    result = measure_train_step(osp.join(folder, name), 'cuda', batch=2, backbone=backbone)
    print(json.dumps(result))
    out = os.environ.get('DENSE_GPU_OUT', osp.join(ROOT, 'work_dirs',
                                                   'dense_gpu_measurements.jsonl'))
    os.makedirs(osp.dirname(out), exist_ok=True)
    with open(out, 'a') as f:
        f.write(json.dumps(result) + '\n')
    assert result['peak_gib'] < torch.cuda.get_device_properties(0).total_memory / 2**30


@pytest.mark.parametrize('folder,name', [
    # Mask R-CNN's steps take 17-21 s of CPU each: slow (make test keeps UPerNet's)
    pytest.param(MASK_RCNN, 'mask-rcnn_adm-256-uncond-pyramid-ft-cp_fpn_8xb2-1x_coco.py',
                 marks=pytest.mark.slow),
    pytest.param(MASK_RCNN, 'mask-rcnn_adm-256-uncond-b24-frozen_simple-fpn_8xb2-1x_coco.py',
                 marks=pytest.mark.slow),
    (UPERNET, 'upernet_adm-256-uncond-pyramid-ft-cp_8xb2-80k_ade20k-512x512.py'),
], ids=lambda v: v if isinstance(v, str) and v.endswith('.py') else '')
def test_dense_bench_cpu(folder, name):
    """The measurement code on CPU: tiny U-Net, 64 x 64, one warm-up and one timed step."""
    pytest.importorskip('mmdet' if 'mask-rcnn' in name else 'mmseg')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = measure_train_step(osp.join(folder, name), 'cpu', batch=2, size=64,
                                    steps=1, warmup=1, arch=TINY_ARCH)
    finally:
        torch.set_num_threads(threads)
    assert result['s_per_iter'] > 0 and result['peak_gib'] is None
    assert result['trainable_params'] > result['backbone_trainable_params']
    assert (result['backbone_trainable_params'] == 0) is ('frozen' in name)
