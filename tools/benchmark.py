"""Feature-extraction speed of ADMBackbone (against OpenAI's guided-diffusion) or of a latent
diffusers family's backbone, SD, SDXL, DiT or PixArt (against the diffusers model's full
forward), in one process.

    python tools/benchmark.py --arch adm-256-uncond --blocks 24 --timesteps 150 \\
        --batch 64 --dtype bf16 --compile --out work_dirs/bench/block24.json
    python tools/benchmark.py --backbone sd --arch sd-1.x --blocks pyramid --timesteps 100 \\
        --batch 16 --size 512 --dtype bf16 --out work_dirs/bench/sd_pyramid.json
    python tools/benchmark.py --backbone dit --arch dit-xl-2-256 --blocks 14 --timesteps 100 \\
        --batch 16 --dtype bf16 --out work_dirs/bench/dit_b14.json

Prints a table (img/s, ms per batch, counted GFLOP per image, achieved TFLOP/s, peak GPU
memory, first-call and warm-up time, the ratio ours/reference, and per-block cosine
agreement) and writes it all as JSON with --out. Runs on the GPU if there is one, else on
the CPU (the reference then runs in fp32). See docs/benchmark.md.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import sys

from benchmarks import (FAMILIES, BenchmarkConfig, LatentBenchmarkConfig, format_table,
                        run_benchmark, run_latent_benchmark)
from mmdiffssl.models.unets import ADM_PRESETS

#: flags of one side only: those of the latent families (and the families taking each), ADM's
LATENT_FLAGS = {'--pretrained': FAMILIES, '--config': FAMILIES, '--stride4': ('sd', 'sdxl'),
                '--text': ('sdxl', 'pixart'), '--class-label': ('adm', 'dit')}
ADM_FLAGS = ('--channels', '--compile', '--cuda-graphs', '--checkpoint')


def parse_ints(value):
    return tuple(int(v) for v in value.split(',') if v.strip())


def parse_blocks(value):
    return value if value in ('all', 'pyramid') else parse_ints(value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backbone', choices=('adm', ) + tuple(FAMILIES), default='adm',
                        help="'adm' (ADMBackbone vs guided-diffusion, default) or a latent "
                        "family (its backbone vs the diffusers model's full forward; needs "
                        'the sd extra)')
    presets = '; '.join(f'{name}: {", ".join(family.archs)}'
                        for name, family in FAMILIES.items())
    parser.add_argument('--arch',
                        help=f'adm: preset ({", ".join(ADM_PRESETS)}, default adm-256-uncond) '
                        'or a JSON dict of guided-diffusion flags (may contain "preset"); '
                        f'a latent family: a preset of random weights ({presets}; default '
                        'the first) or a JSON dict {"unet"|"transformer": {...}, "vae": '
                        '{...}} of diffusers configs')
    parser.add_argument('--pretrained', help='latent families: a local diffusers folder or '
                        'single checkpoint file instead of random weights of --arch')
    parser.add_argument('--config', help='latent families: with a single checkpoint file, '
                        'the local folder of component configs')
    parser.add_argument('--stride4', choices=('vae', 'upsample'),
                        help="sd, sdxl: add the backbone's stride-4 level")
    parser.add_argument('--text', help='sdxl, pixart: a text embedding file (sdxl: '
                        'prompt_embeds + pooled_prompt_embeds, pixart: T5 prompt_embeds + '
                        'prompt_attention_mask); default random embeddings with random '
                        'weights, the null prompt for sdxl with --pretrained')
    parser.add_argument('--channels', type=int,
                        help='override num_channels to shrink the U-Net (head channels '
                        'shrink with it, so the head count stays)')
    parser.add_argument('--blocks', type=parse_blocks,
                        help="comma-separated block numbers, 'all' (adm: every block, the full "
                        "forward but the 3x3 output conv) or 'pyramid' (default 24 for adm, "
                        "the backbone's default for a latent family: pyramid for sd/sdxl, "
                        'the middle block for dit/pixart)')
    parser.add_argument('--timesteps', type=parse_ints,
                        help='comma-separated timesteps (default 150 for adm, 100 for the '
                        'latent families)')
    parser.add_argument('--batch', type=int, default=64, help='images per batch')
    parser.add_argument('--size', type=int, help="input resolution (default the arch's "
                        'native one)')
    parser.add_argument('--dtype', choices=('fp32', 'bf16', 'fp16'), default='bf16',
                        help='our autocast dtype (default bf16)')
    parser.add_argument('--compile', action='store_true',
                        help='ADMBackbone(compile=True): torch.compile + channels_last')
    parser.add_argument('--compile-mode', help="torch.compile mode, e.g. 'max-autotune'")
    parser.add_argument('--cuda-graphs', action='store_true',
                        help='ADMBackbone(cuda_graphs=True) (with --compile, CUDA only)')
    parser.add_argument('--ref-dtype', choices=('auto', 'fp16', 'fp32'), default='auto',
                        help="reference precision: 'auto' = adm: the published use_fp16 flag "
                        'on a GPU (convert_to_fp16), latent families: fp16 on a GPU (the SDXL '
                        'VAE in fp32); fp32 on a CPU')
    parser.add_argument('--no-reference', action='store_true', help='measure ours only')
    parser.add_argument('--noise', choices=('fixed', 'fresh', 'none'), default='fixed',
                        help="our q_sample noise mode (default 'fixed', the backbone's)")
    parser.add_argument('--iters', type=int, default=20, help='timed iterations per side')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed calls per side after the first call')
    parser.add_argument('--check-images', type=int, default=4,
                        help='images compared in fp32 for the cosine agreement')
    parser.add_argument('--checkpoint', help='U-Net weights for both sides instead of '
                        're-drawn random ones (e.g. 256x256_diffusion_uncond.pt)')
    parser.add_argument('--class-label', type=int,
                        help='adm: label for class-conditional archs (default 0); dit: a '
                        'fixed class (default the null class)')
    parser.add_argument('--device', help="'cuda', 'cuda:1', 'cpu' (default cuda if "
                        'available)')
    parser.add_argument('--threads', type=int, help='torch CPU threads')
    parser.add_argument('--cudnn-benchmark', action='store_true',
                        help='torch.backends.cudnn.benchmark=True (both sides)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the result as JSON here')
    return parser.parse_args(argv)


def used_flags(args, flags):
    """The command-line flags among ``flags`` that were given."""
    return [flag for flag in flags if getattr(args, flag[2:].replace('-', '_')) not in
            (None, False)]


def main(argv=None):
    args = parse_args(argv)
    adm = args.backbone == 'adm'
    arch = args.arch or ('adm-256-uncond' if adm else None)
    if arch and arch.lstrip().startswith('{'):
        from cli_common import json_dict_argument
        presets = ADM_PRESETS if adm else FAMILIES[args.backbone].archs
        arch = json_dict_argument(arch, '--arch', (
            'give a JSON dict of guided-diffusion flags (adm) or {"unet"|"transformer": {...}, '
            f'"vae": {{...}}}} (latent families), or a preset: {", ".join(presets)}'))
    command = ' '.join(shlex.quote(a) for a in ['python', 'tools/benchmark.py'] +
                       list(sys.argv[1:] if argv is None else argv))
    common = dict(arch=arch, blocks=args.blocks or ((24, ) if adm else None),
                  timesteps=args.timesteps or ((150, ) if adm else (100, )), batch=args.batch,
                  dtype=args.dtype, device=args.device, iters=args.iters, warmup=args.warmup,
                  noise=args.noise, reference=not args.no_reference,
                  check_images=args.check_images, seed=args.seed, threads=args.threads,
                  command=command)
    wrong = [flag for flag in used_flags(args, LATENT_FLAGS)
             if args.backbone not in LATENT_FLAGS[flag]]
    if not adm:
        wrong += used_flags(args, ADM_FLAGS)
    if wrong:
        allowed = {flag: LATENT_FLAGS.get(flag, ('adm', )) for flag in wrong}
        raise SystemExit('; '.join(f'{flag} is not used with --backbone {args.backbone} (only '
                                   f'with {", ".join(allowed[flag])})' for flag in wrong))
    if adm:
        cfg = BenchmarkConfig(
            channels=args.channels, size=args.size, compile=args.compile,
            compile_mode=args.compile_mode, cuda_graphs=args.cuda_graphs,
            ref_dtype=args.ref_dtype, checkpoint=args.checkpoint,
            class_label=args.class_label, cudnn_benchmark=args.cudnn_benchmark, **common)
        result = run_benchmark(cfg)
    else:
        try:
            cfg = LatentBenchmarkConfig(
                family=args.backbone, pretrained=args.pretrained, config=args.config,
                size=args.size, stride4=args.stride4, text=args.text,
                class_label=args.class_label, ref_dtype=args.ref_dtype, **common)
        except ValueError as error:
            raise SystemExit(f'--arch: {error}')
        result = run_latent_benchmark(cfg)
    print(format_table(result))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
