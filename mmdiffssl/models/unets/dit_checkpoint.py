"""DiT's original single-file key layout (facebookresearch/DiT ``DiT-XL-2-256x256.pt``) and
diffusers' ``DiTTransformer2DModel`` layout, converted both ways.

=========================================  ==================================================
original                                   diffusers
=========================================  ==================================================
``x_embedder.proj.{weight,bias}``          ``pos_embed.proj.*``
``pos_embed`` (fixed 2-D sin-cos)          not stored (a buffer recomputed from the config)
``t_embedder.mlp.{0,2}.*``                 ``transformer_blocks.N.norm1.emb.timestep_embedder
                                           .linear_{1,2}.*`` (copied into every block N)
``y_embedder.embedding_table.weight``      ``transformer_blocks.N.norm1.emb.class_embedder
                                           .embedding_table.weight`` (every block N)
``blocks.N.attn.qkv.*`` (q, k, v stacked)  ``transformer_blocks.N.attn1.to_{q,k,v}.*``
``blocks.N.attn.proj.*``                   ``transformer_blocks.N.attn1.to_out.0.*``
``blocks.N.mlp.fc{1,2}.*``                 ``transformer_blocks.N.ff.net.{0.proj,2}.*``
``blocks.N.adaLN_modulation.1.*``          ``transformer_blocks.N.norm1.linear.*``
``final_layer.adaLN_modulation.1.*``       ``proj_out_1.*``
``final_layer.linear.*``                   ``proj_out_2.*``
=========================================  ==================================================

Both sides order the block modulation as (shift, scale, gate) of attention then of the MLP,
and the final one as (shift, scale). Going back to the original layout needs the per-block
copies of the timestep and label embedders to be equal (they are in every converted
checkpoint); a diffusers model trained with distinct copies has no original equivalent.
"""
import re

import torch

_EMB = 'norm1.emb.'
_BLOCK_PAIRS = (('attn.proj.', 'attn1.to_out.0.'), ('mlp.fc1.', 'ff.net.0.proj.'),
                ('mlp.fc2.', 'ff.net.2.'), ('adaLN_modulation.1.', 'norm1.linear.'))
_EMBEDDER_PAIRS = (('t_embedder.mlp.0.', 'timestep_embedder.linear_1.'),
                   ('t_embedder.mlp.2.', 'timestep_embedder.linear_2.'),
                   ('y_embedder.embedding_table.', 'class_embedder.embedding_table.'))
_TOP_PAIRS = (('x_embedder.proj.', 'pos_embed.proj.'),
              ('final_layer.adaLN_modulation.1.', 'proj_out_1.'),
              ('final_layer.linear.', 'proj_out_2.'))


def is_original_dit(state):
    """Whether a state dict is in the original DiT layout."""
    return 'x_embedder.proj.weight' in state and any(k.startswith('blocks.') for k in state)


def _depth(state, pattern):
    found = {int(m[1]) for m in (re.match(pattern, k) for k in state) if m}
    if found != set(range(len(found))):
        raise ValueError(f'block numbers {sorted(found)} are not 0..{len(found) - 1}')
    return len(found)


def _swap(key, pairs, forward=True):
    for old, new in pairs:
        src, dst = (old, new) if forward else (new, old)
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def original_to_diffusers(state):
    """Original DiT keys -> ``DiTTransformer2DModel`` keys (new tensors, same values).

    Raises:
        ValueError: naming keys that belong to neither layout's known entries.
    """
    depth = _depth(state, r'blocks\.(\d+)\.')
    out, unknown = {}, []
    for key, value in state.items():
        if key == 'pos_embed':
            continue
        m = re.match(r'blocks\.(\d+)\.(.*)', key)
        if m:
            block, rest = f'transformer_blocks.{m[1]}.', m[2]
            if rest.startswith('attn.qkv.'):
                for name, part in zip('qkv', value.chunk(3, dim=0)):
                    out[f'{block}attn1.to_{name}.{rest[len("attn.qkv."):]}'] = part.clone()
                continue
            new = _swap(rest, _BLOCK_PAIRS)
            if new is None:
                unknown.append(key)
            else:
                out[block + new] = value.clone()
            continue
        new = _swap(key, _EMBEDDER_PAIRS)
        if new is not None:
            for i in range(depth):
                out[f'transformer_blocks.{i}.{_EMB}{new}'] = value.clone()
            continue
        new = _swap(key, _TOP_PAIRS)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value.clone()
    if unknown:
        raise ValueError(f'keys of no DiT original layout entry: {unknown[:8]}')
    return out


def diffusers_to_original(state, pos_embed=None):
    """``DiTTransformer2DModel`` keys -> original DiT keys (``pos_embed`` added if given).

    Raises:
        ValueError: where the blocks' embedder copies differ (no original equivalent).
    """
    depth = _depth(state, r'transformer_blocks\.(\d+)\.')
    out, unknown = {}, []
    for key, value in state.items():
        m = re.match(r'transformer_blocks\.(\d+)\.(.*)', key)
        if not m:
            new = _swap(key, _TOP_PAIRS, forward=False)
            if new is None:
                unknown.append(key)
            else:
                out[new] = value.clone()
            continue
        block, rest = int(m[1]), m[2]
        if rest.startswith(_EMB):
            new = _swap(rest[len(_EMB):], _EMBEDDER_PAIRS, forward=False)
            if new is None:
                unknown.append(key)
            elif block == 0:
                out[new] = value.clone()
            elif not torch.equal(value, state[f'transformer_blocks.0.{rest}']):
                raise ValueError(f'{key} differs from block 0\'s copy: the original DiT layout '
                                 'has one timestep and label embedder for all blocks')
            continue
        if rest.startswith('attn1.to_q.'):
            tail = rest[len('attn1.to_q.'):]
            out[f'blocks.{block}.attn.qkv.{tail}'] = torch.cat(
                [state[f'transformer_blocks.{block}.attn1.to_{n}.{tail}'] for n in 'qkv'])
            continue
        if rest.startswith(('attn1.to_k.', 'attn1.to_v.')):
            continue
        new = _swap(rest, _BLOCK_PAIRS, forward=False)
        if new is None:
            unknown.append(key)
        else:
            out[f'blocks.{block}.{new}'] = value.clone()
    if unknown:
        raise ValueError(f'keys of no DiTTransformer2DModel entry: {unknown[:8]}')
    if depth == 0:
        raise ValueError('no transformer_blocks.* keys: not a DiTTransformer2DModel state dict')
    if pos_embed is not None:
        out['pos_embed'] = pos_embed.clone()
    return out

