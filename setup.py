"""mmdiffssl: pre-trained diffusion U-Nets as backbones for OpenMMLab codebases."""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
#: shipped in ``mmdiffssl/.mim/`` of a built package, as OpenMMLab packages ship theirs:
#: mmdiffssl.apis.register_models() reads the model index there (the configs it points at too)
MIM_FILES = ('model-index.yml', 'configs')


def requirements(name):
    """Requirement lines of ``requirements/<name>.txt``, comments dropped."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [line.split('#')[0].strip() for line in lines if line.split('#')[0].strip()]


class BuildPyWithModelIndex(build_py):
    """build_py that also copies :data:`MIM_FILES` into the built ``mmdiffssl/.mim/``.

    Editable installs read them from the source checkout instead.
    """

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = Path(self.build_lib) / 'mmdiffssl' / '.mim'
        for name in MIM_FILES:
            source, target = HERE / name, mim / name
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                mim.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


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
    cmdclass={'build_py': BuildPyWithModelIndex},
)
