"""Install ddss: `pip install -e .` (library and CLI), `pip install -e '.[test]'` (tests).

The test extra needs PyTorch as a *reference* only. Install the CPU build first, pinned, so that
pip does not pull a CUDA build: `pip install torch==2.13.0` (see README / .ci/run).
"""
from setuptools import find_packages, setup

setup(
    name="ddss",
    version="0.1.0",
    description="Learned and searched few-step samplers for pretrained diffusion models, in JAX.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["ddss", "ddss.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2",
        "orbax-checkpoint>=0.5",
        "numpy>=1.24",
        "scipy>=1.10",
        "tensorflow-datasets>=4.9",
        "ml-collections>=0.1.1",
        "absl-py>=1.0",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "safetensors>=0.4",
        "scikit-learn>=1.2",  # ddss.data.digits: the bundled 8×8 digits
        "pillow>=9.1",  # ddss.data.tfds: center-crop and resize (Image.Resampling)
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    ],
    package_data={"ddss.models": ["assets/*.safetensors", "assets/*.npz", "assets/ceilings/*.npz", "assets/*.json"]},
    extras_require={
        # torch itself is installed separately and pinned (torch==2.13.0, CPU build).
        "test": ["pytest>=7", "pytest-xdist>=3.5", "hypothesis>=6", "diffusers==0.42.1"],
        # What tests/test_notebooks.py needs to execute colabs/*.ipynb headless.
        "notebooks": ["nbclient>=0.7", "nbformat>=5.1", "ipykernel>=6"],
    },
    entry_points={"console_scripts": ["ddss=ddss.main:cli"]},
)
