"""DiTBackbone on a tiny DiT in diffusers' folder layout and in the original ``.pt`` layout:
parity with diffusers' own forward, class labels, the modulated variant by hand, positional
embeddings at other sizes, massive-channel zeroing, the key conversion both ways, offline
loading."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from helpers.sd_tiny import configs_only, no_network  # noqa: F401 (fixture)

pytest.importorskip('diffusers')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def tiny_dit_folder(tmp_path_factory):
    from helpers.transformer_tiny import write_tiny_dit
    folder = str(tmp_path_factory.mktemp('dit'))
    write_tiny_dit(folder)
    return folder


def images(size=64, batch=2, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def build(folder, **kwargs):
    from mmdiffssl.models.backbones import DiTBackbone
    kwargs.setdefault('noise', 'none')
    return DiTBackbone(pretrained=folder, **kwargs).eval()


def reference(folder, cls='Transformer2DModel'):
    """diffusers' own models, loaded as diffusers users do (the hub class name is remapped)."""
    import diffusers
    transformer = getattr(diffusers, cls).from_pretrained(osp.join(folder, 'transformer'))
    vae = diffusers.AutoencoderKL.from_pretrained(osp.join(folder, 'vae'))
    return transformer.eval(), vae.eval()


def hooked_forward(transformer, latents, t, labels, extra=()):
    """Outputs of every transformer block (and of ``extra`` modules) during the full forward."""
    seen, handles = {}, []
    modules = dict(transformer.named_modules())
    for name in [f'transformer_blocks.{i}' for i in range(len(transformer.transformer_blocks))
                 ] + list(extra):
        handles.append(modules[name].register_forward_hook(
            lambda m, a, out, name=name: seen.__setitem__(name, out)))
    with torch.no_grad():
        transformer(latents, timestep=t, class_labels=labels)
    for handle in handles:
        handle.remove()
    return seen


def as_map(tokens, side):
    return tokens.transpose(1, 2).unflatten(-1, (side, side))


def assert_parity(ours, ref):
    tol = 1e-5 * max(1.0, ref.abs().max().item())
    assert (ours - ref).abs().max().item() <= tol


@pytest.mark.parametrize('size', [64, 128])
def test_blocks_and_taps_equal_the_hooked_diffusers_forward(tiny_dit_folder, size):
    transformer, vae = reference(tiny_dit_folder)
    assert type(transformer).__name__ == 'DiTTransformer2DModel'   # remapped by norm_type
    taps = ('transformer_blocks.1.attn1', 'transformer_blocks.2.ff', 'transformer_blocks.1.norm3')
    bb = build(tiny_dit_folder, blocks='all', taps=taps, timesteps=(30, ), class_label=3)
    x = images(size)
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        ours = bb.intermediates(x)
    t = torch.full((2, ), 30)
    seen = hooked_forward(transformer, latents, t, torch.full((2, ), 3), taps)
    side = size // 16
    for row in bb.block_table:
        assert ours[row.index].shape == (1, 2, 16, side, side)
        assert_parity(ours[row.index][0], as_map(seen[row.name], side))
    for tap in taps:
        assert_parity(ours[tap][0], as_map(seen[tap], side))


def test_positional_embedding_is_interpolated_at_other_sizes(tiny_dit_folder):
    bb = build(tiny_dit_folder, blocks=(1, ))
    embed = bb.transformer.pos_embed
    native = embed.pos_embed[0]                           # (4 * 4, D) at the 8 x 8 latents
    with torch.no_grad():
        big = embed(torch.zeros(1, 4, 16, 16))[0] - embed.proj.bias   # (8 * 8, D)
    grid = big.unflatten(0, (8, 8))
    torch.testing.assert_close(grid[::2, ::2].flatten(0, 1), native, rtol=0, atol=1e-6)
    assert not torch.allclose(grid[1::2, 1::2].flatten(0, 1), native, atol=1e-3)


def test_class_label_modes(tiny_dit_folder):
    x = images()
    feats = {}
    for label in ('null', 2, 5):
        with torch.no_grad():
            feats[label] = build(tiny_dit_folder, blocks=(2, ), class_label=label)(x)[0]
    assert not torch.allclose(feats['null'], feats[2]) and not torch.allclose(feats[2], feats[5])
    per_image = build(tiny_dit_folder, blocks=(2, ), class_label='sample', timesteps=(10, 50))
    fixed = {c: build(tiny_dit_folder, blocks=(2, ), class_label=c, timesteps=(10, 50))
             for c in (2, 5)}
    with torch.no_grad():
        mixed = per_image(x, class_labels=torch.tensor([2, 5]))
        torch.testing.assert_close(mixed[0][0], fixed[2](x)[0][0], rtol=0, atol=1e-6)
        torch.testing.assert_close(mixed[0][1], fixed[5](x)[0][1], rtol=0, atol=1e-6)
        null = per_image(x, class_labels=torch.tensor([10, 10]))      # the null class
        unconditional = build(tiny_dit_folder, blocks=(2, ), timesteps=(10, 50))(x)
        torch.testing.assert_close(null[0], unconditional[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="class_label='sample' needs each image's label"):
        per_image(x)
    with pytest.raises(ValueError, match=r'class_labels \[11\] are outside \[0, 10\]'):
        per_image(x, class_labels=torch.tensor([1, 11]))
    with pytest.raises(ValueError, match=r"class_label=10 is not allowed.*\[0, 10\)"):
        build(tiny_dit_folder, class_label=10)


def test_labels_are_not_dropped_in_train_mode(tiny_dit_folder):
    bb = build(tiny_dit_folder, blocks=(2, ), class_label=4, frozen=False).train()
    x = images()
    torch.manual_seed(0)
    first = bb(x)[0]
    assert all(torch.equal(first, bb(x)[0]) for _ in range(5))


def test_classifier_passes_the_samples_labels(tiny_dit_folder):
    pytest.importorskip('mmpretrain')
    from mmpretrain.structures import DataSample

    from mmdiffssl.models.classifiers import DiffSSLClassifier
    model = DiffSSLClassifier(
        backbone=dict(type='DiTBackbone', pretrained=tiny_dit_folder, blocks=(2, ),
                      class_label='sample', noise='none'),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=10)).eval()
    samples = [DataSample().set_gt_label(3), DataSample().set_gt_label(7)]
    x = images()
    got = []
    original = model.backbone.run_network
    model.backbone.run_network = lambda *a, **k: (got.append(model.backbone._given_labels),
                                                  original(*a, **k))[1]
    with torch.no_grad():
        model.predict(x, samples)
        model.loss(x, samples)
    assert [g.tolist() for g in got] == [[3, 7], [3, 7]]


def _hand_modulation(linear, chunks, emb, tokens):
    """LayerNorm(x) * (1 + scale) + shift, (shift, scale) the first two of ``chunks``."""
    shift, scale = linear(F.silu(emb)).chunk(chunks, dim=1)[:2]
    return F.layer_norm(tokens, tokens.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]


def test_modulated_variant_is_the_next_adaln_by_hand(tiny_dit_folder):
    transformer, _ = reference(tiny_dit_folder)
    raw = build(tiny_dit_folder, blocks='all', timesteps=(40, ), class_label=6)
    mod = build(tiny_dit_folder, blocks='all', timesteps=(40, ), class_label=6,
                feature='modulated')
    x = images()
    blocks = transformer.transformer_blocks
    t, labels = torch.full((2, ), 40), torch.full((2, ), 6)

    def embedding(block):            # timestep + label embedding of a block's adaLN
        emb = block.norm1.emb
        return emb.timestep_embedder(emb.time_proj(t)) + emb.class_embedder.embedding_table(labels)
    with torch.no_grad():
        a, b = raw.intermediates(x), mod.intermediates(x)
        for index in range(1, len(blocks) + 1):
            tokens = a[index][0].flatten(2).transpose(1, 2)
            if index < len(blocks):                  # the next block's attention adaLN
                nxt = blocks[index]
                expected = _hand_modulation(nxt.norm1.linear, 6, embedding(nxt), tokens)
            else:                                    # the final layer's
                expected = _hand_modulation(transformer.proj_out_1, 2, embedding(blocks[0]),
                                            tokens)
            torch.testing.assert_close(b[index][0], as_map(expected, 4), rtol=1e-5, atol=1e-5)
    assert "next block's adaLN" in mod.block_table[0].feature


def test_modulated_pruning_keeps_only_the_next_adaln(tiny_dit_folder):
    bb = build(tiny_dit_folder, blocks=(2, ), feature='modulated')
    names = [n for n, _ in bb.named_parameters()]
    assert any(n.startswith('transformer.transformer_blocks.2.norm1.linear.') for n in names)
    assert not any(n.startswith(('transformer.transformer_blocks.2.attn1',
                                 'transformer.transformer_blocks.2.ff',
                                 'transformer.transformer_blocks.3', 'transformer.proj_out'))
                   for n in names)
    full = build(tiny_dit_folder, blocks=(2, ), feature='modulated', prune=False)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(bb(x), full(x), rtol=0, atol=0)
    last = build(tiny_dit_folder, blocks=(4, ), feature='modulated')
    assert last.transformer.proj_out_1 is not None and last.transformer.proj_out_2 is None


def test_massive_channel_zeroing_finds_a_planted_channel(tiny_dit_folder):
    planted = 5
    bb = build(tiny_dit_folder, blocks=(1, 2), massive_channels=dict(k=100))
    plain = build(tiny_dit_folder, blocks=(1, 2))

    def plant(module, args, out):
        out = out.clone()
        out[..., planted] += 1e4
        return out
    for model in (bb, plain):
        model.transformer.transformer_blocks[0].register_forward_hook(plant)
    x = images()
    chosen = bb.calibrate_massive_channels(x)
    assert chosen == {1: [planted], 2: chosen[2]} and planted in chosen[2]
    with torch.no_grad():
        ours, ref = bb(x), plain(x)
    assert ref[0][:, planted].abs().max() > 1e3 and ours[0][:, planted].abs().max() == 0
    keep = [c for c in range(16) if c not in chosen[1]]
    torch.testing.assert_close(ours[0][:, keep], ref[0][:, keep], rtol=0, atol=0)
    key = bb.cache_key()['massive']
    assert key['k'] == 100 and key['channels'][1] == [planted]
    unplanted = build(tiny_dit_folder, blocks=(1, ), massive_channels=dict(k=100))
    assert unplanted.calibrate_massive_channels(x) == {1: []}
    with pytest.raises(ValueError, match='must be a number > 1'):
        build(tiny_dit_folder, massive_channels=dict(k=0.5))


# ---------------------------------------------------------------------- original layout
def _tied(transformer):
    """The model with block 0's timestep/label embedders in every block (as every converted
    original checkpoint has them)."""
    state = transformer.state_dict()
    for key in list(state):
        if key.startswith('transformer_blocks.') and '.norm1.emb.' in key:
            state[key] = state['transformer_blocks.0.' + key.split('.', 2)[2]]
    transformer.load_state_dict(state)
    return transformer


def test_key_conversion_both_ways(tiny_dit_folder):
    from mmdiffssl.models.unets.dit_checkpoint import (diffusers_to_original, is_original_dit,
                                                       original_to_diffusers)
    transformer, _ = reference(tiny_dit_folder)
    with pytest.raises(ValueError, match="differs from block 0's copy"):
        diffusers_to_original(transformer.state_dict())
    ours = _tied(transformer).state_dict()
    original = diffusers_to_original(ours, pos_embed=transformer.pos_embed.pos_embed)
    assert is_original_dit(original) and not is_original_dit(ours)
    width = 16
    qkv = original['blocks.1.attn.qkv.weight']
    assert qkv.shape == (3 * width, width)
    torch.testing.assert_close(qkv[width:2 * width], ours['transformer_blocks.1.attn1.to_k.weight'])
    assert {k for k in original if not k.startswith('blocks.')} == {
        'x_embedder.proj.weight', 'x_embedder.proj.bias', 'pos_embed',
        't_embedder.mlp.0.weight', 't_embedder.mlp.0.bias', 't_embedder.mlp.2.weight',
        't_embedder.mlp.2.bias', 'y_embedder.embedding_table.weight',
        'final_layer.adaLN_modulation.1.weight', 'final_layer.adaLN_modulation.1.bias',
        'final_layer.linear.weight', 'final_layer.linear.bias'}
    back = original_to_diffusers(original)
    assert back.keys() == ours.keys()
    assert all(torch.equal(back[k], ours[k]) for k in ours)
    again = diffusers_to_original(back, pos_embed=original['pos_embed'])
    assert again.keys() == original.keys()
    assert all(torch.equal(again[k], original[k]) for k in original)
    with pytest.raises(ValueError, match='no DiT original layout entry'):
        original_to_diffusers(dict(original, **{'blocks.0.extra.weight': qkv}))


def test_original_pt_file_gives_the_folder_features(tiny_dit_folder, tmp_path, no_network):
    from mmdiffssl.models.unets.dit_checkpoint import diffusers_to_original
    transformer, vae = reference(tiny_dit_folder)
    folder = str(tmp_path / 'tied')
    _tied(transformer).save_pretrained(osp.join(folder, 'transformer'))
    vae.save_pretrained(osp.join(folder, 'vae'))
    configs = configs_only(folder, str(tmp_path / 'configs'))
    vae.save_pretrained(osp.join(configs, 'vae'))
    pt = str(tmp_path / 'DiT-tiny.pt')
    torch.save(diffusers_to_original(transformer.state_dict(),
                                     pos_embed=transformer.pos_embed.pos_embed), pt)
    from_pt = build(pt, config=configs, blocks=(1, 4), timesteps=(20, ), class_label=1)
    from_folder = build(folder, blocks=(1, 4), timesteps=(20, ), class_label=1)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(from_pt(x), from_folder(x), rtol=0, atol=0)
    assert from_pt.weights_fingerprint() != from_folder.weights_fingerprint()
    with pytest.raises(ValueError, match='set config='):
        build(pt)


def test_offline_loading_and_its_errors(tiny_dit_folder, tmp_path, no_network):
    build(tiny_dit_folder, blocks=(1, ))                       # no socket opened
    with pytest.raises(FileNotFoundError, match='does not exist.*nothing is downloaded'):
        build(str(tmp_path / 'missing'))
    with pytest.raises(ValueError, match="feature='tokens' is not one of"):
        build(tiny_dit_folder, feature='tokens')
    from helpers.transformer_tiny import TINY_DIT
    with pytest.raises(ValueError, match="norm_type='ada_norm_zero'.*norm_type='ada_norm_single'"):
        from mmdiffssl.models.backbones import DiTBackbone
        DiTBackbone(transformer_config=dict(TINY_DIT, norm_type='ada_norm_single'),
                    vae_config=dict(latent_channels=4))
