"""engage-edge: the device package (edge_app) and its console script.

Device install:    pip install .[pi]        (Raspberry Pi; picamera2 comes from apt)
                   pip install .[jetson]    (Jetson)
Laptop / tests:    pip install .[dev]
Training:          pip install .[train]     (TensorFlow: never on the device)

The wheel carries only edge_app, with its model, demo photos, web views and default
config as package data. ``training/`` is never installed: it runs from a checkout
(``python -m training.train``); the ``train`` extra only brings its dependencies.
"""
from setuptools import find_packages, setup

setup(
    name="engage-edge",
    version="0.1.0",  # edge_app.RELEASE says the same (tests/test_packaging.py)
    description="On-device classroom engagement detection from facial expressions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # 3.14: no ai-edge-litert below 2 for aarch64 and none tried here on x86; pip says so instead of a device
    # that installs and then cannot load its model
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["edge_app", "edge_app.*"]),
    package_data={
        # BUILD: the checkout's `git describe`, written by firmware/install.sh into the copy it builds
        # from (edge_app/__init__.py shows it in the version); absent from a plain `pip wheel`
        "edge_app": ["default_config.toml", "BUILD"],
        "edge_app.models": ["shipped/*.tflite", "shipped/*.json", "shipped/*.png", "shipped/LICENSE-*", "shipped/NOTICE-*"],
        "edge_app.vision": ["photos/*.jpg", "photos/*.json", "photos/PROVENANCE.md"],
        "edge_app.web": ["views/*.tpl", "static/*"],
        "edge_app.fleet.classroom": ["views/*.tpl", "static/*"],
    },
    install_requires=[
        # aarch64 (Pi OS bookworm): numpy 1.x, so apt's numpy (1.24) serves the venv as it serves apt's
        # picamera2 and simplejpeg, which numpy 2 breaks ("numpy.dtype size changed", picamera2 #1088):
        # opencv 4.12 and later need numpy 2
        "numpy>=1.24,<2; platform_machine=='aarch64'",
        "numpy>=1.24; platform_machine!='aarch64'",  # 1.24 as well: `make test-pi-versions` runs a Pi's numpy here
        "opencv-python-headless>=4.10,<4.12; platform_machine=='aarch64'",
        "opencv-python-headless>=4.10,<5; platform_machine!='aarch64'",  # 5.x drops CascadeClassifier and the Haar files
        # aarch64 (Pi 4/5, Jetson): 2.2 and 2.3 crash loading the model on an emulated
        # Cortex-A72/A76, 1.4.0 passes the golden check there (tools/prove-arm64.sh)
        "ai-edge-litert>=1.2,<2; platform_machine=='aarch64'",
        "ai-edge-litert>=1.2; platform_machine!='aarch64'",
        "pillow>=10.3",
        "bottle>=0.13",
        "cheroot>=10",
        "prometheus-client>=0.20",
        "paho-mqtt>=2,<3",  # the classroom: devices publish to an MQTT broker (edge_app/fleet)
    ],
    extras_require={
        # systemd's notify protocol is spoken by edge_app/device/watchdog.py (stdlib): no sdnotify
        "pi": ["gpiozero>=2.0", "lgpio>=0.2; platform_machine=='aarch64'"],
        "jetson": ["Jetson.GPIO>=2.1"],  # gpiozero does not run on a Jetson: indicators.backend = "jetson"
        "train": ["tensorflow-cpu>=2.16,<2.22", "matplotlib>=3.8"],
        # scikit-image: only tests' face-free photos (coffee, a cat) and LFW faces, and tools/detect_bench.py;
        # never on a device
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "requests>=2.31", "playwright>=1.45", "gpiozero>=2.0", "hypothesis>=6.100",
                "scikit-image>=0.22",
                "ruff>=0.17", "mypy>=2.4", "types-requests>=2.31"],  # `make lint` (part of `make test`): ruff.toml, mypy.ini
    },
    entry_points={"console_scripts": ["engage-edge=edge_app.cli:main"]},
)
