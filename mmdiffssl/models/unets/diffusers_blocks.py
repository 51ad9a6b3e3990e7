"""Block table and block-level forward of diffusers U-Nets (``UNet2DConditionModel``,
``UNet2DModel``), stopping after the deepest requested block.

Block numbering (1-based, execution order), one block per diffusers block module:

=====================  ===========  ===========================================
block                  kind         module (its feature)
=====================  ===========  ===========================================
1 .. D                 'input'      ``down_blocks.0`` .. ``down_blocks.{D-1}``
D + 1                  'middle'     ``mid_block``
D + 2 .. D + 1 + U     'output'     ``up_blocks.0`` .. ``up_blocks.{U-1}``
=====================  ===========  ===========================================

A block's feature is the output of its last ResNet/attention layer, **before** its
resampler (:data:`DIFFUSERS_FEATURES`; ADM's blocks differ because ADM's resamplers are
blocks of their own, so the paper's numbering reads whole ADM blocks, while a diffusers
block module holds its resampler: reading before it keeps one resolution per block): a down block's feature is the skip it stores at its own resolution (not the
downsampled map it passes on), an up block's feature is its map before the upsampler. So
``down_blocks.i`` and ``up_blocks.{U-1-i}`` have the same resolution, and the decoder
pyramid of Stable Diffusion 1.x/2.x (4 levels) is ``up_blocks.0..3`` at strides 8, 4, 2, 1
of the latent, i.e. 64, 32, 16 and 8 of the image (1280, 1280, 640 and 320 channels); the
resampler runs as part of its block and feeds the next one. Names (``'up_blocks.1'``,
``'mid_block'``) are accepted wherever block numbers are.

Stable Diffusion 1.x/2.x (``block_out_channels`` 320, 640, 1280, 1280):

=====  ===============  ========  ==================  ================
block  module           channels  stride (of image)   cross-attention
=====  ===============  ========  ==================  ================
1      down_blocks.0    320       8                   yes
2      down_blocks.1    640       16                  yes
3      down_blocks.2    1280      32                  yes
4      down_blocks.3    1280      64                  no
5      mid_block        1280      64                  yes
6      up_blocks.0      1280      64                  no
7      up_blocks.1      1280      32                  yes
8      up_blocks.2      640       16                  yes
9      up_blocks.3      320       8                   yes
=====  ===============  ========  ==================  ================

The forward (:func:`forward_intermediates`) runs the U-Net's own modules in the order of
diffusers' ``forward`` (timestep embedding, ``conv_in``, down blocks with their skips, mid
block, up blocks popping the skips) and stops after the deepest requested block; the final
norm and ``conv_out`` never run. Features equal those read by forward hooks on the same
modules during diffusers' full forward (tests/test_models/test_backbones/test_sd_backbone.py).
SDXL's ``'text_time'`` addition embedding is fed through ``added_cond_kwargs``; other
class/addition embeddings (unCLIP, Kandinsky), ControlNet residuals and the score-SDE skip
blocks are not supported and are refused when the model is checked.
"""
import contextlib
from dataclasses import dataclass

import torch


#: What a diffusers block's feature is, per kind.
DIFFUSERS_FEATURES = {
    'input': 'output of its last ResNet/attention layer, before its downsampler (the skip '
             'at its own resolution)',
    'middle': 'output of the mid block',
    'output': 'output of its last ResNet/attention layer, before its upsampler',
}


def check_supported(unet, addition_embed_types=()):
    """Raise ValueError for diffusers U-Net features this block forward does not handle.

    Args:
        addition_embed_types (tuple[str]): ``addition_embed_type`` values the caller feeds
            through ``added_cond_kwargs`` (SDXL's ``'text_time'``).
    """
    config = unet.config
    unsupported = []
    for key in ('class_embed_type', 'addition_embed_type', 'num_class_embeds',
                'encoder_hid_dim_type', 'time_cond_proj_dim'):
        value = config.get(key)
        if value is not None and not (key == 'addition_embed_type'
                                      and value in addition_embed_types):
            unsupported.append(f'{key}={value!r}')
    for name, block in _named_blocks(unet):
        if hasattr(block, 'skip_conv'):
            unsupported.append(f'{name} ({type(block).__name__}, score-SDE skip block)')
    if unsupported:
        raise ValueError(f'{type(unet).__name__} with {", ".join(unsupported)} is not supported '
                         '(supported: Stable Diffusion 1.x/2.x, SDXL with SDXLBackbone and '
                         'DDPM-style U-Nets)')


def _named_blocks(unet):
    for i, block in enumerate(unet.down_blocks):
        yield f'down_blocks.{i}', block
    if unet.mid_block is not None:
        yield 'mid_block', unet.mid_block
    for i, block in enumerate(unet.up_blocks):
        yield f'up_blocks.{i}', block


def _resampler(block):
    """The block's down- or upsampler module list, or None."""
    return getattr(block, 'downsamplers', None) or getattr(block, 'upsamplers', None)


def describe_blocks(unet, prefix='unet', stride_factor=1):
    """list[BlockInfo] of a diffusers U-Net.

    Args:
        unet: the full (unpruned) U-Net.
        prefix (str): its attribute name in the backbone (``BlockInfo.module``).
        stride_factor (int): backbone-input pixels per U-Net input pixel (1 in pixel space,
            the VAE's downsampling for latents).
    """
    from mmdiffssl.models.backbones.base import BlockInfo
    rows, stride = [], 1
    for name, block in _named_blocks(unet):
        kind = 'input' if name.startswith('down') else 'middle' if name == 'mid_block' \
            else 'output'
        rows.append(BlockInfo(len(rows) + 1, name, f'{prefix}.{name}', kind,
                              int(block.resnets[-1].out_channels), stride * stride_factor,
                              DIFFUSERS_FEATURES[kind],
                              bool(getattr(block, 'has_cross_attention', False))))
        if _resampler(block):
            stride = stride * 2 if kind == 'input' else stride // 2
    return rows


def prune_after(unet, last, keep_resampler=False):
    """Drop what never runs when the forward stops after block ``last``: later blocks, that
    block's resampler (the feature is read before it; ``keep_resampler`` keeps it for a tap
    inside it) and the output layers."""
    from torch import nn
    down = len(unet.down_blocks)
    has_mid = unet.mid_block is not None
    if last <= down:
        unet.down_blocks = unet.down_blocks[:last]
        if not keep_resampler:
            unet.down_blocks[-1].downsamplers = None
        unet.mid_block = None
        unet.up_blocks = nn.ModuleList()
    elif has_mid and last == down + 1:
        unet.up_blocks = nn.ModuleList()
    else:
        unet.up_blocks = unet.up_blocks[:last - down - has_mid]
        if not keep_resampler:
            unet.up_blocks[-1].upsamplers = None
    unet.conv_norm_out = None
    unet.conv_out = None


# ---------------------------------------------------------------------- attention maps
def cross_attention_layers(block):
    """The cross-attention (``attn2``) modules of a block, in execution order."""
    return [m for m in block.modules()
            if getattr(m, 'is_cross_attention', False) and hasattr(m, 'to_q')]


def attention_parts(module, args, kwargs):
    """Per-head ``(q, k, v, scale)`` of a diffusers ``Attention`` layer from the inputs of its
    forward, as its SDPA processor computes them (spatial inputs flattened, group norm,
    projections, ``norm_cross``, ``norm_q``/``norm_k``); each ``(N, heads, T, d)``."""
    hidden = args[0] if args else kwargs['hidden_states']
    context = kwargs.get('encoder_hidden_states')
    if context is None and len(args) > 1:
        context = args[1]
    if hidden.dim() == 4:
        hidden = hidden.flatten(2).transpose(1, 2)
    if module.group_norm is not None:
        hidden = module.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    if context is None:
        context = hidden
    elif module.norm_cross:
        context = module.norm_encoder_hidden_states(context)
    heads = module.heads

    def split(x):
        return x.unflatten(-1, (heads, -1)).transpose(1, 2)
    query, key, value = (split(module.to_q(hidden)), split(module.to_k(context)),
                         split(module.to_v(context)))
    if module.norm_q is not None:
        query = module.norm_q(query)
    if module.norm_k is not None:
        key = module.norm_k(key)
    return query, key, value, module.scale


@contextlib.contextmanager
def capture_cross_attention(block, store):
    """Append each cross-attention layer's head-averaged attention probabilities
    ``(N, HW, T)`` (fp32) to ``store`` while the block runs."""
    def hook(module, args, kwargs):
        query, key, _, scale = attention_parts(module, args, kwargs)
        scores = query.float() @ key.float().transpose(-1, -2) * scale
        store.append(scores.softmax(-1).mean(1))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True)
               for m in cross_attention_layers(block)]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def _maps_of(store, height, width):
    """Mean over layers of ``(N, H*W, T)`` probabilities -> ``(N, T, H, W)``."""
    probs = torch.stack(store).mean(0)
    return probs.transpose(1, 2).unflatten(-1, (height, width))


# ---------------------------------------------------------------------- forward
def _embedding(unet, sample, timesteps, conditional, encoder_hidden_states=None,
               added_cond_kwargs=None):
    if conditional:
        t_emb = unet.get_time_embed(sample=sample, timestep=timesteps)
        emb = unet.time_embedding(t_emb, None)
        if added_cond_kwargs is not None:
            emb = emb + unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states,
                                           added_cond_kwargs=added_cond_kwargs)
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        return emb
    t_emb = unet.time_proj(timesteps).to(dtype=unet.dtype)
    return unet.time_embedding(t_emb)


@contextlib.contextmanager
def _pre_upsample(block, store):
    """Record the input of the block's upsampler (the block's feature) in ``store``."""
    upsamplers = getattr(block, 'upsamplers', None)
    if not upsamplers:
        yield
        return
    handle = upsamplers[0].register_forward_pre_hook(
        lambda module, args, kwargs: store.append(args[0] if args else kwargs['hidden_states']),
        with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def forward_intermediates(unet, sample, timesteps, blocks, encoder_hidden_states=None,
                          stop_early=True, attention_maps=(), added_cond_kwargs=None):
    """Run a diffusers U-Net block by block and return the requested block features.

    Args:
        unet: a ``UNet2DConditionModel`` (``encoder_hidden_states`` required) or a
            ``UNet2DModel``, checked by :func:`check_supported`.
        sample (Tensor): ``(N, C_in, H, W)``, H and W multiples of the total downsampling.
        timesteps (Tensor): ``(N,)`` integer timesteps.
        blocks (Iterable[int]): block numbers (see the module docstring).
        encoder_hidden_states (Tensor, optional): ``(N, L, D)`` text embeddings.
        stop_early (bool): stop after the deepest requested block.
        attention_maps (Iterable[int]): blocks whose cross-attention maps to return.
        added_cond_kwargs (dict, optional): the addition embedding's inputs (SDXL:
            ``text_embeds`` ``(N, D_pool)`` and ``time_ids`` ``(N, 6)``).

    Returns:
        (dict[int, Tensor], dict[int, Tensor]): block -> ``(N, C_b, H_b, W_b)`` feature, and
        block -> ``(N, L, H_b, W_b)`` cross-attention probabilities (fp32; averaged over the
        block's cross-attention layers and their heads) for each block of
        ``attention_maps``.
    """
    conditional = hasattr(unet, 'get_time_embed')
    wanted, maps_wanted = set(blocks), set(attention_maps)
    names = [name for name, _ in _named_blocks(unet)]
    last = max(wanted | maps_wanted) if stop_early else len(names)
    if conditional and encoder_hidden_states is None:
        raise ValueError(f'{type(unet).__name__} needs encoder_hidden_states')
    if unet.config.center_input_sample:
        sample = 2 * sample - 1.0
    emb = _embedding(unet, sample, timesteps, conditional, encoder_hidden_states,
                     added_cond_kwargs)
    context = {}
    if conditional:
        context['encoder_hidden_states'] = unet.process_encoder_hidden_states(
            encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)

    features, maps = {}, {}
    h = unet.conv_in(sample)
    skips = (h, )
    for index, (name, block) in enumerate(_named_blocks(unet), start=1):
        if index > last:
            break
        kwargs = context if getattr(block, 'has_cross_attention', False) else {}
        probs, pre = [], []
        with capture_cross_attention(block, probs) if index in maps_wanted \
                else contextlib.nullcontext():
            if name.startswith('down'):
                h, res = block(hidden_states=h, temb=emb, **kwargs)
                skips += res
                feature = res[-2] if getattr(block, 'downsamplers', None) else h
            elif name == 'mid_block':
                h = block(h, emb, **kwargs)
                feature = h
            else:
                res = skips[-len(block.resnets):]
                skips = skips[:-len(block.resnets)]
                with _pre_upsample(block, pre):
                    h = block(hidden_states=h, res_hidden_states_tuple=res, temb=emb, **kwargs)
                feature = pre[0] if pre else h
        if index in wanted:
            features[index] = feature
        if index in maps_wanted and probs:
            maps[index] = _maps_of(probs, *feature.shape[-2:])
    return features, maps


# ---------------------------------------------------------------------- published shapes
#: Config values of the published Stable Diffusion U-Nets and VAE (their diffusers
#: ``unet/config.json`` and ``vae/config.json``), for block tables and shape checks without
#: weights (e.g. ``SDBackbone(unet_config=SD_ARCHS['sd-1.x']['unet'], ...)`` on the meta
#: device). 2.x differs from 1.x in its text width (OpenCLIP, 1024) and head layout.
_SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
               block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=512,
               down_block_types=('DownEncoderBlock2D', ) * 4,
               up_block_types=('UpDecoderBlock2D', ) * 4, scaling_factor=0.18215)
_SD_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280), norm_num_groups=32,
                down_block_types=('CrossAttnDownBlock2D', ) * 3 + ('DownBlock2D', ),
                up_block_types=('UpBlock2D', ) + ('CrossAttnUpBlock2D', ) * 3)
SD_ARCHS = {
    'sd-1.x': dict(unet=dict(_SD_UNET, cross_attention_dim=768, attention_head_dim=8),
                   vae=_SD_VAE),
    'sd-2.x': dict(unet=dict(_SD_UNET, cross_attention_dim=1024,
                             attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
                             sample_size=96),
                   vae=dict(_SD_VAE, sample_size=768)),
}
