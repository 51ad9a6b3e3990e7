"""SDXLBackbone on a tiny SDXL folder: text and time ids as diffusers' SDXL pipeline makes
them, every block equal to the hooked U-Net forward, the pyramid with its stride-4 level,
embeddings from a file, the VAE dtype rule, the refiner refusal, offline loading."""
import os.path as osp
import shutil

import pytest
import torch

from helpers.sd_tiny import no_network  # noqa: F401 (fixture)

pytest.importorskip('diffusers')
pytest.importorskip('transformers')
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def tiny_sdxl(tmp_path_factory):
    from helpers.sdxl_tiny import write_tiny_sdxl
    folder = str(tmp_path_factory.mktemp('sdxl'))
    return folder, write_tiny_sdxl(folder)


def images(size=64, batch=2, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def build(folder, **kwargs):
    from mmdiffssl.models.backbones import SDXLBackbone
    kwargs.setdefault('noise', 'none')
    return SDXLBackbone(pretrained=folder, **kwargs).eval()


def pipeline(components):
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline
    return StableDiffusionXLPipeline(scheduler=DDPMScheduler(), **components)


def feature_module(unet, name):
    block = unet.get_submodule(name)
    if name == 'mid_block':
        return block
    return (getattr(block, 'attentions', None) or block.resnets)[-1]


@pytest.mark.parametrize('size', [64, 128])
def test_blocks_equal_the_hooked_unet_forward_with_pipeline_conditioning(tiny_sdxl, size,
                                                                          no_network):
    folder, components = tiny_sdxl
    pipe = pipeline(components)
    context, _, pooled, _ = pipe.encode_prompt('', device='cpu', num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)
    time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), torch.float32,
                                      text_encoder_projection_dim=pooled.shape[-1])
    bb = build(folder, blocks='all', timesteps=(70, ))
    torch.testing.assert_close(bb.prompt_embeds, context, rtol=0, atol=0)
    torch.testing.assert_close(bb.pooled_embeds, pooled, rtol=0, atol=0)
    x = images(size)
    unet, vae = components['unet'], components['vae']
    with torch.no_grad():
        latents = vae.encode(x).latent_dist.mean * 0.13025
        ours = bb.intermediates(x)
    seen, handles = {}, []
    for row in bb.block_table:
        handles.append(feature_module(unet, row.name).register_forward_hook(
            lambda m, a, out, i=row.index: seen.__setitem__(i, out[0] if isinstance(out, tuple)
                                                            else out)))
    with torch.no_grad():
        unet(latents, torch.full((2, ), 70), encoder_hidden_states=context.expand(2, -1, -1),
             added_cond_kwargs=dict(text_embeds=pooled.expand(2, -1),
                                    time_ids=time_ids.expand(2, -1)))
    for handle in handles:
        handle.remove()
    for row in bb.block_table:
        ref = seen[row.index]
        assert ours[row.index][0].shape == (2, row.channels, size // row.stride,
                                            size // row.stride)
        tol = 1e-5 * max(1.0, ref.abs().max().item())
        assert (ours[row.index][0] - ref).abs().max().item() <= tol, row.name


def test_pyramid_strides_and_the_stride4_level(tiny_sdxl):
    folder, _ = tiny_sdxl
    bb = build(folder, stride4='vae')
    assert bb.blocks == (7, 6, 5)
    assert [s.stride for s in bb.output_shape()] == [4, 8, 16, 32]
    with torch.no_grad():
        outs = bb(images())
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    assert [o.shape[1] for o in outs] == bb.out_channels
    assert bb.size_divisibility == 32


def test_embeddings_from_a_file_and_their_errors(tiny_sdxl, tmp_path):
    folder, _ = tiny_sdxl
    null = build(folder, blocks=(6, ))
    path = str(tmp_path / 'null.pt')
    torch.save(dict(prompt_embeds=null.prompt_embeds[0], pooled_prompt_embeds=null.pooled_embeds),
               path)
    from_file = build(folder, blocks=(6, ), text=dict(type='file', path=path))
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(from_file(x), null(x), rtol=0, atol=0)
    assert from_file.cache_key() == null.cache_key()
    prompt = build(folder, blocks=(6, ), text=dict(type='prompt', text='a cat'))
    assert prompt.cache_key() != null.cache_key()
    torch.save(dict(prompt_embeds=null.prompt_embeds[0]), path)
    with pytest.raises(ValueError, match="must hold \\('prompt_embeds', 'pooled_prompt_embeds'\\)"):
        build(folder, text=dict(type='file', path=path))
    with pytest.raises(ValueError, match="type one of \\('null', 'prompt', 'file'\\)"):
        build(folder, text=dict(type='learned', num_tokens=4))


def test_vae_dtype_rule(tiny_sdxl):
    folder, _ = tiny_sdxl
    for kwargs in (dict(dtype='fp16'), dict(vae_dtype='fp16')):
        with pytest.raises(ValueError, match="SDXL's VAE overflows in fp16.*vae_dtype='fp32'"):
            build(folder, **kwargs)
    bb = build(folder, blocks=(6, ), dtype='fp16', vae_dtype='bf16')
    assert bb.vae_dtype == 'bf16' and bb.cache_key()['vae_dtype'] == 'bf16'
    fp32 = build(folder, blocks=(6, ))
    bf16 = build(folder, blocks=(6, ), vae_dtype='bf16')
    x = images()
    with torch.no_grad():
        a, b = fp32.encode(x), bf16.encode(x)
    assert a.dtype == b.dtype == torch.float32 and not torch.equal(a, b)
    torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)


def test_refiner_is_refused(tmp_path):
    from helpers.sdxl_tiny import write_tiny_sdxl
    folder = str(tmp_path / 'refiner')
    write_tiny_sdxl(folder, refiner=True)
    with pytest.raises(ValueError, match='SDXL refiner .*not supported'):
        build(folder)
    index = osp.join(folder, 'model_index.json')
    shutil.copy(index, index + '.bak')
    with open(index, 'w') as f:
        f.write('{}')
    with pytest.raises(ValueError, match='SDXL refiner .*not supported'):   # by the width
        build(folder)


def test_offline_loading_errors(tmp_path, no_network):
    with pytest.raises(FileNotFoundError, match='does not exist.*nothing is downloaded'):
        build(str(tmp_path / 'missing'))


def test_single_file_with_a_config_folder_equals_the_folder(tiny_sdxl, tmp_path, no_network):
    """One .safetensors (diffusers layout under unet./vae.) plus a weightless config folder
    loads the same U-Net and VAE and gives the folder's features."""
    from safetensors.torch import save_file

    from helpers.sd_tiny import configs_only
    folder, _ = tiny_sdxl
    ref = build(folder, blocks=(6, 7))
    full = build(folder, blocks=(6, 7), prune=False)    # the file holds every block
    text = str(tmp_path / 'null.pt')
    torch.save(dict(prompt_embeds=ref.prompt_embeds[0], pooled_prompt_embeds=ref.pooled_embeds),
               text)
    single = str(tmp_path / 'sdxl.safetensors')
    save_file({**{'unet.' + k: v.contiguous() for k, v in full.unet.state_dict().items()},
               **{'vae.' + k: v.contiguous() for k, v in full.vae.state_dict().items()}}, single)
    config = configs_only(folder, str(tmp_path / 'configs'))
    bb = build(single, config=config, blocks=(6, 7), text=dict(type='file', path=text))
    for module in ('unet', 'vae'):
        expected = getattr(ref, module).state_dict()
        for key, value in getattr(bb, module).state_dict().items():
            assert torch.equal(expected[key], value), (module, key)
    x = images()
    with torch.no_grad():
        for a, b in zip(bb(x), ref(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match='config='):
        build(single, text=dict(type='file', path=text))
