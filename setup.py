"""mmdiffssl: pre-trained diffusion U-Nets as backbones for OpenMMLab codebases."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name):
    """Requirement lines of ``requirements/<name>.txt``, comments dropped."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [line.split('#')[0].strip() for line in lines if line.split('#')[0].strip()]


setup(
    name='mmdiffssl',
    version='0.1.0',
    description='Diffusion U-Nets as backbones for mmpretrain, mmdet and mmsegmentation',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdiffssl', 'mmdiffssl.*']),
    package_data={'mmdiffssl': ['datasets/imagenet_wnids.txt']},
    python_requires='>=3.9',
    install_requires=['torch>=2.1'] + requirements('runtime'),
    extras_require={
        'mm': requirements('mm'),
        # Stable Diffusion / diffusers backbones (diffusers + transformers for CLIP)
        'sd': requirements('sd'),
        'tests': requirements('tests'),
    },
    license='Apache-2.0',
)
