"""Sample images from a diffusion checkpoint (DDPM or DDIM) and write a PNG grid.

    python tools/sample.py CONFIG CHECKPOINT OUT.png [--method ddim] [--num 16] [--seed 0]

CONFIG is a pretraining config (``model.arch``) or a backbone config (``model.backbone.arch``)
or an arch (preset name / JSON flags); CHECKPOINT is read with ``--checkpoint-prefix``
(default ``unet.``: the EMA weights of a DDPMPretrainer run) or a plain OpenAI ``.pt`` with
``--checkpoint-prefix ''``.
"""
import argparse

import numpy as np
import torch
from cli_common import arch_from_argument
from PIL import Image

from mmdiffssl.models.ddpm_objective import DDPMObjective
from mmdiffssl.models.diffusion import DiffusionSchedule
from mmdiffssl.models.sampling import DiffusionSampler
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
from mmdiffssl.utils.checkpoint import load_weights


def arch_of(value):
    if value.endswith('.py'):
        from mmengine.config import Config
        model = Config.fromfile(value).model
        return model['arch'] if 'arch' in model else model['backbone']['arch']
    return arch_from_argument(value, argument='arch (first argument)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('arch', help='config file, preset name or JSON flags')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='PNG path')
    parser.add_argument('--checkpoint-prefix', default='unet.')
    parser.add_argument('--method', choices=['ddpm', 'ddim'], default='ddpm')
    parser.add_argument('--steps', type=int,
                        help="ddim only: N evenly strided timesteps (guided-diffusion's 'ddimN')")
    parser.add_argument('--num', type=int, default=16)
    parser.add_argument('--size', type=int, help='image size (default: the arch image_size)')
    parser.add_argument('--class-label', type=int)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    flags = adm_flags_from(arch_of(args.arch))
    unet = build_adm_unet(flags)
    if unet.num_classes is None:
        if args.class_label is not None:
            parser.error(f'--class-label {args.class_label} was given, but this arch is not '
                         'class-conditional (class_cond=False): drop --class-label')
    elif args.class_label is None:
        parser.error(f'this arch is class-conditional ({unet.num_classes} classes): pass '
                     f'--class-label in [0, {unet.num_classes})')
    elif not 0 <= args.class_label < unet.num_classes:
        parser.error(f'--class-label {args.class_label} is outside [0, {unet.num_classes}), '
                     f'the classes of this arch')
    load_weights(unet, args.checkpoint, prefix=args.checkpoint_prefix or None)
    unet.to(args.device).eval()
    sampler = DiffusionSampler(unet, DDPMObjective(
        DiffusionSchedule(flags['noise_schedule'], flags['diffusion_steps']), flags['learn_sigma']))
    size = args.size or flags['image_size']
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(args.num, 3, size, size, generator=gen).to(args.device)
    y = None
    if unet.num_classes is not None:
        y = torch.full((args.num, ), args.class_label, device=args.device)
    if args.method == 'ddim':
        samples = sampler.ddim(noise, y=y, generator=gen, steps=args.steps)
    elif args.steps is not None:
        parser.error('--steps respaces DDIM only: add --method ddim')
    else:
        samples = sampler.ddpm(noise, y=y, generator=gen)
    images = ((samples.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().permute(0, 2, 3, 1).numpy()
    cols = int(np.ceil(np.sqrt(args.num)))
    rows = int(np.ceil(args.num / cols))
    grid = np.zeros((rows * size, cols * size, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = img
    Image.fromarray(grid).save(args.out)
    print(f'wrote {args.out}: {args.num} {args.method} samples at {size}x{size}')


if __name__ == '__main__':
    main()
