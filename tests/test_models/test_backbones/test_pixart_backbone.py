"""PixArtBackbone on tiny PixArt-α (size conditioning) and PixArt-Σ-style folders: parity with
diffusers' hooked forward, the text mask, the modulated variant by hand, the T5 embedding tool,
text errors, offline loading."""
import os
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool
from helpers.sd_tiny import no_network  # noqa: F401 (fixture)

pytest.importorskip('diffusers')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    from helpers.transformer_tiny import write_text_file, write_tiny_pixart
    root = tmp_path_factory.mktemp('pixart')
    alpha, sigma = str(root / 'alpha'), str(root / 'sigma')
    write_tiny_pixart(alpha)
    write_tiny_pixart(sigma, seed=1, sigma=True)
    text = str(root / 'null.pt')
    write_text_file(text)
    return dict(alpha=alpha, sigma=sigma, text=text, root=str(root))


def images(size=64, batch=2, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def build(folder, text, **kwargs):
    from mmdiffssl.models.backbones import PixArtBackbone
    kwargs.setdefault('noise', 'none')
    return PixArtBackbone(pretrained=folder, text=dict(type='file', path=text), **kwargs).eval()


def reference(folder):
    import diffusers
    transformer = diffusers.Transformer2DModel.from_pretrained(osp.join(folder, 'transformer'))
    vae = diffusers.AutoencoderKL.from_pretrained(osp.join(folder, 'vae'))
    return transformer.eval(), vae.eval()


@pytest.mark.parametrize('name,size', [('alpha', 64), ('alpha', 96), ('sigma', 64)])
def test_blocks_and_taps_equal_the_hooked_diffusers_forward(folders, name, size, no_network):
    transformer, vae = reference(folders[name])
    assert type(transformer).__name__ == 'PixArtTransformer2DModel'   # remapped by norm_type
    assert transformer.use_additional_conditions == (name == 'alpha')
    taps = ('transformer_blocks.1.attn2', 'transformer_blocks.2.ff')
    bb = build(folders[name], folders['text'], blocks='all', taps=taps, timesteps=(60, ))
    x = images(size)
    saved = torch.load(folders['text'])
    side = size // 16
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        ours = bb.intermediates(x)
        seen, handles = {}, []
        modules = dict(transformer.named_modules())
        names = [r.name for r in bb.block_table] + list(taps)
        for module in names:
            handles.append(modules[module].register_forward_hook(
                lambda m, a, out, n=module: seen.__setitem__(n, out)))
        added = dict(resolution=torch.tensor([[size, size]]).repeat(2, 1).float(),
                     aspect_ratio=torch.tensor([[1.0]]).repeat(2, 1))     # as the pipeline
        transformer(latents, encoder_hidden_states=saved['prompt_embeds'][None].expand(2, -1, -1),
                    encoder_attention_mask=saved['prompt_attention_mask'][None].expand(2, -1),
                    timestep=torch.full((2, ), 60), added_cond_kwargs=added)
        for handle in handles:
            handle.remove()
    for module in names:
        key = bb.block_table.row(module).index if module in [r.name for r in bb.block_table] \
            else module
        ref = seen[module].transpose(1, 2).unflatten(-1, (side, side))
        assert ours[key].shape == (1, 2, 24, side, side)
        tol = 1e-5 * max(1.0, ref.abs().max().item())
        assert (ours[key][0] - ref).abs().max().item() <= tol, module


def test_the_text_mask_and_size_conditioning_matter(folders, tmp_path):
    from helpers.transformer_tiny import write_text_file
    full = str(tmp_path / 'full.pt')
    write_text_file(full, kept=6)
    x = images()
    with torch.no_grad():
        masked = build(folders['alpha'], folders['text'], blocks=(2, ))(x)[0]
        unmasked = build(folders['alpha'], full, blocks=(2, ))(x)[0]
    assert not torch.allclose(masked, unmasked, atol=1e-4)
    assert build(folders['alpha'], folders['text']).cache_key() != \
        build(folders['alpha'], full).cache_key()


def test_modulated_variant_is_the_next_scale_shift_by_hand(folders):
    import torch.nn.functional as F
    raw = build(folders['alpha'], folders['text'], blocks='all', timesteps=(30, ))
    mod = build(folders['alpha'], folders['text'], blocks='all', timesteps=(30, ),
                feature='modulated')
    model = mod.transformer
    x = images()
    with torch.no_grad():
        a, b = raw.intermediates(x), mod.intermediates(x)
        t = torch.full((2, ), 30)
        added = dict(resolution=torch.tensor([[64.0, 64.0]]).repeat(2, 1),
                     aspect_ratio=torch.ones(2, 1))
        six, embedded = model.adaln_single(t, added, batch_size=2, hidden_dtype=torch.float32)
        for index in range(1, 5):
            tokens = a[index][0].flatten(2).transpose(1, 2)
            if index < 4:
                table = model.transformer_blocks[index].scale_shift_table[None] + \
                    six.reshape(2, 6, -1)
                shift, scale = table[:, 0:1], table[:, 1:2]
            else:
                table = model.scale_shift_table[None] + embedded[:, None]
                shift, scale = table[:, 0:1], table[:, 1:2]
            expected = F.layer_norm(tokens, (24, ), eps=1e-6) * (1 + scale) + shift
            torch.testing.assert_close(b[index][0], expected.transpose(1, 2).unflatten(-1, (4, 4)),
                                       rtol=1e-5, atol=1e-5)


def test_text_errors(folders, tmp_path):
    from mmdiffssl.models.backbones import PixArtBackbone
    for text in (None, dict(type='null'), dict(type='file')):
        with pytest.raises(ValueError, match="PixArt takes T5 embeddings from a file"):
            PixArtBackbone(pretrained=folders['alpha'], text=text)
    wide = str(tmp_path / 'wide.pt')
    torch.save(dict(prompt_embeds=torch.zeros(6, 16)), wide)
    with pytest.raises(ValueError, match='16-wide embeddings but the transformer takes '
                                         'caption_channels=12'):
        build(folders['alpha'], wide)
    with pytest.raises(FileNotFoundError, match='write_t5_embeddings.py'):
        build(folders['alpha'], str(tmp_path / 'missing.pt'))
    with pytest.raises(ValueError, match="needs a transformer with norm_type='ada_norm_single'"):
        from helpers.transformer_tiny import write_tiny_dit
        dit = str(tmp_path / 'dit')
        write_tiny_dit(dit)
        build(dit, folders['text'])


def _tiny_t5(folder):
    """A 1-layer T5 encoder and a word-level tokenizer (pad 0, end 1) under ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel
    vocab = {'<pad>': 0, '</s>': 1, '<unk>': 2, 'a': 3, 'photo': 4, 'of': 5, 'cat': 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single='$A </s>',
                                                       special_tokens=[('</s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token='<pad>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(osp.join(folder, 'tokenizer'))
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=8, d_model=12, d_kv=4, d_ff=16, num_layers=1,
                            num_heads=2)).save_pretrained(osp.join(folder, 'text_encoder'))


@pytest.fixture(scope='module')
def tiny_t5(folders):
    pytest.importorskip('transformers')
    t5 = osp.join(folders['root'], 't5')
    _tiny_t5(t5)
    return t5


def test_t5_embedding_is_what_the_backbone_reads(folders, tiny_t5, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, T5EncoderModel

    from mmdiffssl.models.backbones.pixart_backbone import encode_t5_prompt
    null = encode_t5_prompt(tiny_t5, '', max_length=6)
    out = str(tmp_path / 'null.safetensors')
    save_file(null, out)
    bb = build(folders['alpha'], out, blocks=(1, ))
    tokenizer = AutoTokenizer.from_pretrained(osp.join(tiny_t5, 'tokenizer'))
    ids = tokenizer('', padding='max_length', max_length=6, return_tensors='pt')
    assert ids.attention_mask.tolist() == [[1, 0, 0, 0, 0, 0]]      # '' is its end token
    with torch.no_grad():
        expected = T5EncoderModel.from_pretrained(osp.join(tiny_t5, 'text_encoder'))(
            ids.input_ids, attention_mask=ids.attention_mask)[0]
    torch.testing.assert_close(bb.prompt_embeds, expected, rtol=0, atol=0)
    assert bb.prompt_mask.tolist() == ids.attention_mask.float().tolist()
    assert not any('text_encoder' in n or 'T5' in type(m).__name__ for n, m in bb.named_modules())
    cat = encode_t5_prompt(tiny_t5, 'a photo of cat', max_length=6)
    assert cat['prompt_attention_mask'].tolist() == [1, 1, 1, 1, 1, 0]


@pytest.mark.slow
def test_t5_tool_cli(tiny_t5, tmp_path):
    out = str(tmp_path / 'cat.pt')
    log = run_tool([osp.join(ROOT, 'tools/write_t5_embeddings.py'), tiny_t5, out,
                    '--max-length', '6', '--prompt', 'a photo of cat'], fresh_process=True)
    assert '5 unmasked tokens' in log and os.path.isfile(out)
