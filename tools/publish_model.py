"""Turn a run checkpoint into a release checkpoint to share (as OpenMMLab's publish_model).

    python tools/publish_model.py work_dirs/RUN/epoch_12.pth release/NAME.pth

writes ``release/NAME-<sha256[:8]>.pth`` (the first 8 hex digits of the file's sha256, as
upstream names released weights) and prints its path. The release file holds only
``state_dict`` and ``meta``; the optimizer, schedulers and message hub (mmengine's
``HistoryBuffer`` and numpy objects) are dropped, and ``meta`` is made of plain Python types:
``torch.load(path, weights_only=True)`` reads it in any process, without ``import mmdiffssl``
and without allow-listing anything, and mmdet/mmseg/mmpretrain's APIs accept it
(``DetInferencer(weights=path)`` builds the model from ``meta['cfg']``).

``meta['diffusion_backbones']`` records, per diffusion backbone of the model (by module path,
e.g. ``'backbone'``), the fingerprint of the weights it was trained on and their source (the
backbone config's weights settings): a frozen backbone's U-Net is not in the state dict (it is
reloaded from that source), and loading the release into a backbone built from other weights
raises. The run checkpoint is left as it is (it still resumes).
"""
import argparse
import hashlib
import os
import os.path as osp
from numbers import Integral, Real

import torch

#: Entries of a run checkpoint that a release keeps (upstream's default ``--save-keys``).
RELEASE_KEYS = ('meta', 'state_dict')
#: Backbone config keys that say where its weights come from (ADM, diffusers families).
WEIGHT_SOURCE_KEYS = ('checkpoint', 'checkpoint_prefix', 'checkpoint_key', 'pretrained',
                      'config', 'random_init', 'init_seed')
EXTRA_STATE = '_extra_state'


def plain(value, where='meta'):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists.

    Raises:
        TypeError: an object of another type, named by its key path ``where``.
    """
    if isinstance(value, dict):
        return {k: plain(v, f'{where}[{k!r}]') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, f'{where}[{i}]') for i, v in enumerate(value))
    if value is None or isinstance(value, (str, bool, int, float)) or torch.is_tensor(value):
        return value
    if hasattr(value, 'tolist') and hasattr(value, 'dtype'):   # numpy scalar or array
        return value.tolist()
    if isinstance(value, (Integral, Real)):
        return int(value) if isinstance(value, Integral) else float(value)
    raise TypeError(f'{where} is a {type(value).__module__}.{type(value).__name__}, which '
                    'torch.load(weights_only=True) would refuse; a release holds plain types')


def _backbone_cfg(cfg, module_path):
    """The config dict of the submodule at ``module_path`` (``'backbone'`` ->
    ``cfg.model.backbone``), or None where the config nests it otherwise."""
    node = cfg.get('model')
    for part in module_path.split('.') if module_path else ():
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def diffusion_backbones(state_dict, cfg):
    """Fingerprint and source of each diffusion backbone's weights, by module path.

    A backbone's ``_extra_state`` holds its weights fingerprint
    (:func:`~mmdiffssl.models.backbones.base.decode_fingerprint`); other extra states (noise
    generators) are skipped.
    """
    from mmdiffssl.models.backbones.base import decode_fingerprint
    found = {}
    for key, value in state_dict.items():
        if key != EXTRA_STATE and not key.endswith('.' + EXTRA_STATE):
            continue
        try:
            fingerprint = decode_fingerprint(value)
        except ValueError:
            continue
        path = key[:-len(EXTRA_STATE)].rstrip('.')
        backbone = _backbone_cfg(cfg, path) if cfg is not None else None
        source = None if backbone is None else {
            k: plain(backbone[k], k) for k in WEIGHT_SOURCE_KEYS if backbone.get(k) is not None}
        found[path] = dict(fingerprint=fingerprint, source=source)
    return found


def release_checkpoint(checkpoint):
    """The release dict of a run checkpoint: ``state_dict`` and plain-typed ``meta``."""
    from mmengine.config import Config
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f'not an mmengine run checkpoint: no state_dict (it has: {found})')
    meta = plain(dict(checkpoint.get('meta') or {}))
    cfg_text = meta.get('cfg')
    cfg = Config.fromstring(cfg_text, file_format='.py') if cfg_text else None
    state_dict = dict(checkpoint['state_dict'])
    meta['diffusion_backbones'] = diffusion_backbones(state_dict, cfg)
    return dict(meta=meta, state_dict=state_dict)


def sha256sum(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 24), b''):
            digest.update(chunk)
    return digest.hexdigest()


def publish(in_file, out_file):
    """Write the release of ``in_file`` as ``<out_file stem>-<sha256[:8]>.pth``; return it."""
    from mmdiffssl.utils.checkpoint import read_checkpoint_file
    from mmdiffssl.utils.compat import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()                 # the message hub's HistoryBuffer, numpy
    checkpoint = read_checkpoint_file(in_file)   # safe loading otherwise
    dropped = sorted(set(checkpoint) - set(RELEASE_KEYS)) if isinstance(checkpoint, dict) else []
    release = release_checkpoint(checkpoint)
    folder = osp.dirname(osp.abspath(out_file))
    os.makedirs(folder, exist_ok=True)
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    tmp = f'{stem}.tmp.pth'
    torch.save(release, tmp)
    final = f'{stem}-{sha256sum(tmp)[:8]}.pth'
    os.replace(tmp, final)
    if dropped:
        print(f'dropped from the release: {", ".join(dropped)}')
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Write a release checkpoint (state_dict + '
                                     'plain meta) named with its sha256 prefix')
    parser.add_argument('in_file', help='run checkpoint (tools/train.py output)')
    parser.add_argument('out_file', help='release file name; -<sha256[:8]> is added before .pth')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f'release checkpoint: {publish(args.in_file, args.out_file)}')


if __name__ == '__main__':
    main()
