"""Samplers equal guided-diffusion's p_sample_loop and ddim_sample_loop under fixed noise."""
import json
import os.path as osp

import pytest
import torch
from PIL import Image

from conftest import ROOT, run_tool
from mmdiffssl.models.ddpm_objective import DDPMObjective
from mmdiffssl.models.diffusion import DiffusionSchedule
from mmdiffssl.models.sampling import DiffusionSampler, ddim_timesteps
from mmdiffssl.models.unets import adm_flags_from, build_adm_unet
from mmdiffssl.utils.weight_init import redraw_parameters_

TINY = dict(image_size=8, num_channels=32, num_res_blocks=1, channel_mult='1,2',
            attention_resolutions='4', num_head_channels=16, diffusion_steps=25)


@pytest.mark.parametrize('learn_sigma, schedule', [(True, 'linear'), (False, 'cosine')])
@pytest.mark.parametrize('method', ['ddpm', 'ddim'])
def test_sampler_parity(learn_sigma, schedule, method):
    script_util = pytest.importorskip('guided_diffusion.script_util')
    flags = adm_flags_from(dict(TINY, learn_sigma=learn_sigma, noise_schedule=schedule))
    unet = build_adm_unet(flags).eval()
    redraw_parameters_(unet, torch.Generator().manual_seed(0), std=0.05, gain=0.5)
    ref = script_util.create_gaussian_diffusion(steps=25, learn_sigma=learn_sigma,
                                                noise_schedule=schedule)
    ours = DiffusionSampler(unet, DDPMObjective(DiffusionSchedule(schedule, 25), learn_sigma))
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    with torch.no_grad():
        if method == 'ddpm':
            expected = ref.p_sample_loop(unet, noise.shape, noise=noise.clone(), progress=False)
        else:
            expected = ref.ddim_sample_loop(unet, noise.shape, noise=noise.clone(),
                                            progress=False, eta=0.5)
    torch.manual_seed(5)
    got = ours.ddpm(noise.clone()) if method == 'ddpm' else ours.ddim(noise.clone(), eta=0.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, noise)


@pytest.mark.parametrize('learn_sigma', [True, False])
def test_respaced_ddim_parity(learn_sigma):
    """steps=5 of T=25 equals guided-diffusion's timestep_respacing='ddim5' loop."""
    script_util = pytest.importorskip('guided_diffusion.script_util')
    flags = adm_flags_from(dict(TINY, learn_sigma=learn_sigma))
    unet = build_adm_unet(flags).eval()
    redraw_parameters_(unet, torch.Generator().manual_seed(0), std=0.05, gain=0.5)
    ref = script_util.create_gaussian_diffusion(steps=25, learn_sigma=learn_sigma,
                                                timestep_respacing='ddim5')
    ours = DiffusionSampler(unet, DDPMObjective(DiffusionSchedule('linear', 25), learn_sigma))
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    with torch.no_grad():
        expected = ref.ddim_sample_loop(unet, noise.shape, noise=noise.clone(), progress=False,
                                        eta=0.5)
    torch.manual_seed(5)
    got = ours.ddim(noise.clone(), eta=0.5, steps=5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, ours.ddim(noise.clone(), eta=0.0))
    assert ddim_timesteps(25, 5) == [0, 5, 10, 15, 20]
    assert ddim_timesteps(25, 7) == list(range(0, 25, 4))
    with pytest.raises(ValueError, match='steps=24'):
        ddim_timesteps(25, 24)


def test_sample_tool_writes_grid(tmp_path):
    flags = dict(TINY, learn_sigma=False)
    unet = build_adm_unet(adm_flags_from(flags))
    ckpt = str(tmp_path / 'unet.pt')
    torch.save(unet.state_dict(), ckpt)
    out = str(tmp_path / 'grid.png')
    run_tool([osp.join(ROOT, 'tools/sample.py'), json.dumps(flags), ckpt, out,
              '--checkpoint-prefix', '', '--method', 'ddim', '--num', '5', '--steps', '5'],
             fresh_process=True)   # the command line itself, once per tool
    assert Image.open(out).size == (8 * 3, 8 * 2)
